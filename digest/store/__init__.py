"""The database: the only place that opens connections, runs migrations and writes SQL.

Submodules hold the queries of one table group each (`papers`, `themes`, `summaries`, `editions`, `subscribers`,
`outbox`); this module owns the engine, sessions and Alembic upgrades. SQLite (the default) runs in WAL mode with a busy timeout;
PostgreSQL goes through the same code.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from digest.errors import StoreError
from digest.resources import migrations_dir

SQLITE_BUSY_TIMEOUT_MS = 30_000


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """One engine per URL per process."""
    if url.startswith("sqlite"):
        ensure_sqlite_folder(url)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", configure_sqlite_connection)
        event.listen(engine, "begin", begin_sqlite_transaction)
        return engine
    return create_engine(url, pool_pre_ping=True)


def ensure_sqlite_folder(url: str) -> None:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def configure_sqlite_connection(dbapi_connection, _record) -> None:
    # Let SQLAlchemy issue BEGIN itself (see begin_sqlite_transaction) so transactions behave as documented.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def begin_sqlite_transaction(connection) -> None:
    """Start every SQLite transaction as IMMEDIATE: the write lock is taken up front, so two processes
    never both read a row as free and then race to claim it."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


@lru_cache(maxsize=8)
def _session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def worker_name(token: str | None = None, pid: int | None = None) -> str:
    """How a worker (a sender, a summariser) signs the rows it claims: host, process id and a random token, so
    workers on several machines sharing one database never mistake each other's claims for their own."""
    return f"{socket.gethostname()}:{pid or os.getpid()}:{token or secrets.token_hex(4)}"


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose work commits together at the end of the block, or not at all."""
    with _session_factory(engine).begin() as session:
        yield session


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (default: the newest); safe to run on every start."""
    try:
        command.upgrade(alembic_config(url), revision)
    except OperationalError as exc:
        raise StoreError(f"cannot upgrade database {hide_password(url)}: {exc.orig}") from None


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def open_database(url: str, echo: bool = False) -> Engine:
    """An engine for a database that is at the newest schema, upgrading it first if needed.
    `echo` logs every SQL statement."""
    engine = get_engine(url)
    engine.echo = echo
    try:
        at_head = current_revision(engine) == head_revision()
    except OperationalError as exc:
        raise StoreError(f"cannot open database {hide_password(url)}: {exc.orig}") from None
    if not at_head:
        upgrade(url)
    return engine


def hide_password(url: str) -> str:
    """The database URL with any password masked, for messages (links shown to readers go through
    `digest.render.view.safe_url` instead)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
