"""The schema: Alembic builds it from empty or from an older revision, with no drift from the models."""

import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from digest.errors import StoreError
from digest.models import Base
from digest.store import current_revision, get_engine, head_revision, open_database, upgrade


def schema_drift(engine):
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def test_upgrade_from_empty_reaches_head_without_drift(config):
    engine = open_database(config.database_url)
    assert current_revision(engine) == head_revision()
    assert schema_drift(engine) == []


def test_upgrade_from_older_revision_keeps_data(config):
    url = config.database_url
    upgrade(url, "0001")
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        connection.execute(
            "INSERT INTO papers (key, title, title_norm, abstract, authors, categories, keywords, first_seen_at,"
            " last_seen_at) VALUES ('arxiv:1', 'T', 't', 'A', '[]', '[]', '[]', '2026-01-01', '2026-01-01')"
        )
    upgrade(url)
    engine = get_engine(url)
    assert current_revision(engine) == head_revision()
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT key FROM papers").fetchall() == [("arxiv:1",)]


def test_upgrade_is_idempotent(config):
    upgrade(config.database_url)
    upgrade(config.database_url)
    assert current_revision(get_engine(config.database_url)) == head_revision()


def test_sqlite_runs_in_wal_mode_with_busy_timeout(engine):
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_postgresql_upgrade_reaches_head_without_drift(postgres_url):
    engine = open_database(postgres_url)
    assert current_revision(engine) == head_revision()
    assert schema_drift(engine) == []


def test_a_database_that_cannot_be_opened_is_named_without_its_password():
    with pytest.raises(StoreError, match=r"cannot open database postgresql\+psycopg://reader:\*\*\*@127\.0\.0\.1:1/db") as error:
        open_database("postgresql+psycopg://reader:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(error.value)
