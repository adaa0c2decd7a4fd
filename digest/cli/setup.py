"""`digest init` and `digest db ...`: write a starter config and bring the database schema up to date."""

from __future__ import annotations

import typer

from digest.cli.app import CliState, app, new_group
from digest.config import find_config_path
from digest.resources import reference_config
from digest.store import current_revision, get_engine, head_revision, hide_password, upgrade

db = new_group("db", "Manage the database schema (Alembic migrations).")


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
