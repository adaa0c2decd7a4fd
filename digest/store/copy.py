"""Copying a whole installation from one database to another (SQLite to PostgreSQL, or back): `digest db copy`.

Both ends are brought to the newest schema by Alembic first, so the copy moves rows only. Tables are copied in
dependency order inside one transaction on the target, row counts are compared per table before it commits,
and PostgreSQL's id sequences are moved past the copied ids so new rows do not collide. A target that already
holds rows is refused unless `replace` is set, in which case its rows are deleted in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Table, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from digest.errors import StoreError
from digest.models import Base
from digest.store import get_engine, open_database, hide_password

COPY_CHUNK = 2000


@dataclass(frozen=True)
class TableCopied:
    """One table's outcome: rows read from the source and found in the target afterwards."""

    table: str
    rows: int


def copy_database(
    source_url: str,
    target_url: str,
    replace: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[TableCopied]:
    """Copy every table from `source_url` to `target_url`; return the row count per table. `on_progress(done,
    total)` is called as rows are written. StoreError, naming the database or table, if a URL cannot be opened,
    the target holds rows and `replace` is not set, or a table's count differs after the copy (the target is
    then left as it was)."""
    check_urls(source_url, target_url)
    source = open_database(source_url)
    target = open_database(target_url)
    tables = Base.metadata.sorted_tables
    with source.connect() as reading, target.begin() as writing:
        snapshot(reading)
        occupied = {table.name: n for table in tables if (n := row_count(writing, table))}
        if occupied and not replace:
            held = ", ".join(f"{name} ({n} rows)" for name, n in occupied.items())
            raise StoreError(f"{hide_password(target_url)} already holds data: {held}; use --force to replace it")
        for table in reversed(tables):
            writing.execute(table.delete())
        counts = {table.name: row_count(reading, table) for table in tables}
        progress = RowCounter(sum(counts.values()), on_progress)
        for table in tables:
            copy_table(reading, writing, table, target_url, progress)
            check_count(writing, table, counts[table.name], target_url)
        if writing.dialect.name == "postgresql":
            reset_sequences(writing, tables)
    return [TableCopied(name, rows) for name, rows in counts.items()]


def check_urls(source_url: str, target_url: str) -> None:
    """Refuse a copy onto itself and a SQLite source file that does not exist (opening it would create it)."""
    try:
        source, target = make_url(source_url), make_url(target_url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {exc}") from None
    if source == target:
        raise StoreError(f"--from and --to are the same database: {hide_password(source_url)}")
    if source.get_backend_name() == "sqlite":
        path = source.database or ""
        if path in ("", ":memory:") or not Path(path).exists():
            raise StoreError(f"no SQLite database file at {hide_password(source_url)}")


def snapshot(connection: Connection) -> None:
    """Read the whole source as of one moment: SQLite's transaction already does; PostgreSQL needs a
    repeatable-read, read-only transaction."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))


def row_count(connection: Connection, table: Table) -> int:
    return connection.scalar(select(func.count()).select_from(table))


class RowCounter:
    """Counts the rows written and passes (done, total) to the caller's callback."""

    def __init__(self, total: int, on_progress: Callable[[int, int], None] | None) -> None:
        self.total, self.done, self.on_progress = total, 0, on_progress

    def add(self, rows: int) -> None:
        self.done += rows
        if self.on_progress:
            self.on_progress(self.done, self.total)


def copy_table(reading: Connection, writing: Connection, table: Table, target_url: str, progress: RowCounter) -> None:
    """Stream one table's rows in key order and insert them in chunks."""
    rows = reading.execution_options(yield_per=COPY_CHUNK).execute(select(table).order_by(*table.primary_key.columns))
    try:
        for chunk in rows.mappings().partitions():
            writing.execute(table.insert(), [dict(row) for row in chunk])
            progress.add(len(chunk))
    except SQLAlchemyError as exc:
        raise StoreError(f"copying table {table.name} into {hide_password(target_url)} failed: "
                         f"{getattr(exc, 'orig', None) or exc}") from None


def check_count(connection: Connection, table: Table, expected: int, target_url: str) -> None:
    found = row_count(connection, table)
    if found != expected:
        raise StoreError(f"table {table.name} has {found} rows in {hide_password(target_url)} after the copy, "
                         f"expected {expected}; nothing was copied")


def reset_sequences(connection: Connection, tables: list[Table]) -> None:
    """Move each serial id's sequence past the largest copied id, so the next insert gets a fresh one."""
    for table in tables:
        column = table.autoincrement_column
        if column is not None:
            connection.execute(
                text(f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                     f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"),
                {"table": table.name, "column": column.name},
            )
