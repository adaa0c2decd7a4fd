"""`digest init` and `digest db ...`: write a starter config, bring the database schema up to date, and copy
an installation to another database."""

from __future__ import annotations

import typer
from rich.table import Table

from digest.cli.app import CliState, app, new_group
from digest.cli.progress import progress_bar
from digest.config import find_config_path
from digest.resources import reference_config
from digest.store import current_revision, get_engine, head_revision, hide_password, upgrade
from digest.store.copy import copy_database

db = new_group("db", "Manage the database: schema (Alembic migrations) and copying to another database.")


@app.command()
def init(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing config file."),
) -> None:
    """Write a starter config.toml (if none exists) and create or upgrade the database it names."""
    state: CliState = ctx.obj
    path = find_config_path(state.config_path)
    if path.exists() and not force:
        state.console.print(f"Config already exists: {path} (use --force to overwrite)")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(reference_config().read_text(encoding="utf-8"), encoding="utf-8")
        state.console.print(f"Wrote starter config: {path}")
    state.config_path = path
    upgrade(state.config.database_url)
    state.console.print(f"Database ready at revision {head_revision()}: {hide_password(state.config.database_url)}")


@db.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: str = typer.Argument("head", help="Revision to upgrade to (default: the newest)."),
) -> None:
    """Create the database or bring it to the newest schema; safe to run any time."""
    state: CliState = ctx.obj
    url = state.config.database_url
    upgrade(url, revision)
    state.console.print(f"Database at revision {current_revision(get_engine(url))}: {hide_password(url)}")


@db.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the database's schema revision and the newest one this version knows."""
    state: CliState = ctx.obj
    url = state.config.database_url
    typer.echo(f"database: {current_revision(get_engine(url)) or 'empty'}  newest: {head_revision()}")


@db.command("copy")
def db_copy(
    ctx: typer.Context,
    source: str = typer.Option(None, "--from", help="Database URL to copy from (default: the configured one, "
                               "[database] url or $DIGEST_DATABASE_URL)."),
    target: str = typer.Option(..., "--to", help="Database URL to copy into, e.g. "
                               "postgresql+psycopg://digest@localhost/digest or sqlite:///digest.db."),
    force: bool = typer.Option(False, "--force", help="Replace whatever the target database already holds."),
) -> None:
    """Copy every table from one database to another (SQLite to PostgreSQL, or back), checking the row count
    of each table. Stop `digest run` and any `digest send` first; then point DIGEST_DATABASE_URL (or
    [database] url) at the new database."""
    state: CliState = ctx.obj
    source = source or state.config.database_url
    with progress_bar(state.console, "Copying", unit="rows") as on_progress:
        copied = copy_database(source, target, replace=force, on_progress=on_progress)
    table = Table("Table", "Rows")
    for item in copied:
        table.add_row(item.table, str(item.rows))
    state.console.print(table)
    state.console.print(f"Copied {sum(item.rows for item in copied)} rows from {hide_password(source)} to {hide_password(target)}")
