"""The schema: Alembic builds it from empty or from an older revision, with no drift from the models; and
`digest db copy` moves an installation between SQLite and PostgreSQL."""

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text
from typer.testing import CliRunner

from digest.cli import app
from digest.demo import demo_database_url
from digest.errors import StoreError
from digest.models import Base, Embedding, SummaryClaim
from digest.store import current_revision, get_engine, head_revision, hide_password, open_database, session_scope, upgrade
from digest.store import runs, subscribers


def schema_drift(engine):
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


@pytest.fixture
def empty_url(database, tmp_path, request) -> str:
    """A database with no tables yet: a new SQLite file, or a new PostgreSQL database of this test's own."""
    if database == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'empty.db'}"


def test_upgrade_from_empty_reaches_head_without_drift(empty_url):
    engine = open_database(empty_url)
    assert current_revision(engine) == head_revision()
    assert schema_drift(engine) == []


def test_upgrade_from_older_revision_keeps_data(empty_url):
    upgrade(empty_url, "0001")
    engine = get_engine(empty_url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO papers (key, title, title_norm, abstract, authors, categories, keywords, first_seen_at,"
            " last_seen_at) VALUES ('arxiv:1', 'T', 't', 'A', '[]', '[]', '[]', '2026-01-01', '2026-01-01')"
        ))
    upgrade(empty_url)
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT key FROM papers")).all() == [("arxiv:1",)]


def test_upgrade_is_idempotent(empty_url):
    upgrade(empty_url)
    upgrade(empty_url)
    assert current_revision(get_engine(empty_url)) == head_revision()


@pytest.mark.only_on("sqlite")
def test_sqlite_runs_in_wal_mode_with_busy_timeout(engine):
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_a_database_that_cannot_be_opened_is_named_without_its_password():
    with pytest.raises(StoreError, match=r"cannot open database postgresql\+psycopg://reader:\*\*\*@127\.0\.0\.1:1/db") as error:
        open_database("postgresql+psycopg://reader:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(error.value)


# --- digest db copy ---------------------------------------------------------------------------------------


def table_rows(url: str) -> dict[str, list[dict]]:
    """Every row of every table, in primary-key order, as plain values."""
    engine = get_engine(url)
    with engine.connect() as connection:
        return {
            table.name: [dict(row) for row in connection.execute(
                select(table).order_by(*table.primary_key.columns)).mappings()]
            for table in Base.metadata.sorted_tables
        }


@pytest.fixture(scope="module")
def demo_database(tmp_path_factory) -> Path:
    """A SQLite installation with rows in every table (`digest demo` with the extractive summariser), made once."""
    folder = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        result = CliRunner().invoke(app, ["demo", "--dir", str(folder), "--backend", "extractive"])
        assert result.exit_code == 0, result.output
    engine = get_engine(demo_database_url(folder))
    with session_scope(engine) as session:  # the extractive demo themes by keywords only: add some vectors
        session.add_all(Embedding(paper_id=paper_id, model="test-model", text_hash="0" * 64, dim=4,
                                  vector=bytes(range(paper_id, paper_id + 16))) for paper_id in (1, 2, 3))
        session.add(SummaryClaim(paper_id=4, worker="host:1:cafe"))  # as a summarise run leaves while it works
    with session_scope(engine) as session:  # and what a running daemon records: its lease, heartbeat and a run
        now = datetime.now(timezone.utc)
        runs.acquire_lease(session, "demo-host:1:abc", "demo-host", 1, now, now + timedelta(minutes=1))
        runs.heartbeat(session, "demo-host:1:abc", "demo-host", 1, "active", now)
        run = runs.start_run(session, "daily", "schedule", "demo-host:1:abc", now, now, now.date(), edition_id=1)
        runs.finish_run(session, run.id, "ok", now, counts={"messages_sent": 2})
    engine.dispose()  # closing the last connection folds the WAL into the file
    return folder / "demo.db"


@pytest.fixture
def demo_url(demo_database, tmp_path) -> str:
    """This test's own copy of the demo database."""
    shutil.copy(demo_database, tmp_path / "demo.db")
    return f"sqlite:///{tmp_path / 'demo.db'}"


def test_db_copy_moves_every_table_to_postgresql_and_back(demo_url, postgres_url, tmp_path):
    runner = CliRunner()
    original = table_rows(demo_url)
    assert all(original.values()), "the demo fills every table"

    there = runner.invoke(app, ["db", "copy", "--from", demo_url, "--to", postgres_url])
    assert there.exit_code == 0, there.output
    assert f"Copied {sum(map(len, original.values()))} rows" in there.output
    assert table_rows(postgres_url) == original

    back_url = f"sqlite:///{tmp_path / 'back.db'}"
    back = runner.invoke(app, ["db", "copy", "--from", postgres_url, "--to", back_url])
    assert back.exit_code == 0, back.output
    assert table_rows(back_url) == original

    with session_scope(get_engine(postgres_url)) as session:  # the id sequences moved past the copied ids
        added = subscribers.add_subscriber(session, "new@example.org", [], "daily")
        assert added.id == max(row["id"] for row in original["subscribers"]) + 1


def test_db_copy_refuses_a_target_with_data_unless_forced(demo_url, postgres_url):
    runner = CliRunner()
    assert runner.invoke(app, ["db", "copy", "--from", demo_url, "--to", postgres_url]).exit_code == 0
    with session_scope(get_engine(postgres_url)) as session:
        subscribers.add_subscriber(session, "only-in-target@example.org", [], "daily")

    refused = runner.invoke(app, ["db", "copy", "--from", demo_url, "--to", postgres_url])
    assert refused.exit_code == 1
    assert f"{hide_password(postgres_url)} already holds data: " in refused.output and "use --force" in refused.output

    forced = runner.invoke(app, ["db", "copy", "--from", demo_url, "--to", postgres_url, "--force"])
    assert forced.exit_code == 0, forced.output
    assert table_rows(postgres_url) == table_rows(demo_url)


def test_db_copy_names_the_database_it_cannot_use(tmp_path, demo_url):
    runner = CliRunner()
    missing = runner.invoke(app, ["db", "copy", "--from", f"sqlite:///{tmp_path / 'nope.db'}", "--to", demo_url])
    assert missing.exit_code == 1 and f"no SQLite database file at sqlite:///{tmp_path / 'nope.db'}" in missing.output
    assert not (tmp_path / "nope.db").exists()

    unreachable = "postgresql+psycopg://digest:secret@127.0.0.1:9/digest"
    failed = runner.invoke(app, ["db", "copy", "--from", demo_url, "--to", unreachable])
    assert failed.exit_code == 1
    assert "cannot open database postgresql+psycopg://digest:***@127.0.0.1:9/digest" in failed.output
    assert "secret" not in failed.output

    same = runner.invoke(app, ["db", "copy", "--from", demo_url, "--to", demo_url])
    assert same.exit_code == 1 and "are the same database" in same.output
