"""The root `digest` command: global options, the shared context, and turning DigestError into a clean exit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from functools import cached_property
from pathlib import Path

import click
import typer
from rich.console import Console
from sqlalchemy import Engine
from typer.core import TyperGroup

from digest.config import Config, load_config
from digest.errors import DigestError
from digest.store import open_database


class DigestGroup(TyperGroup):
    """Shows the project's own errors as `Error: ...` with exit code 1 instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            # typer >= 0.29 runs its own copy of click, so click.ClickException would escape as a traceback.
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(1) from exc


@dataclass
class CliState:
    """What every command may need, loaded only when first asked for."""

    config_path: Path | None
    console: Console = field(default_factory=lambda: Console(stderr=True))

    @cached_property
    def config(self) -> Config:
        return load_config(self.config_path)

    @cached_property
    def engine(self) -> Engine:
        return open_database(self.config.database_url, self.config.database.echo)


app = typer.Typer(
    cls=DigestGroup,
    help="Turn new research papers into themed, summarised, emailable digests.\n\n"
    "Start with `digest init`, then `digest ingest` (or `digest demo` to try everything offline).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    config: Path = typer.Option(
        None,
        "--config",
        "-c",
        help="Config file to use. Default: $DIGEST_CONFIG, else ./config.toml.",
        dir_okay=False,
    ),
) -> None:
    ctx.obj = CliState(config_path=config)


def parse_day(value: str | None, param_hint: str = "--date") -> date | None:
    """A YYYY-MM-DD option as a date; a clear usage error (exit 2) for anything else."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date like 2026-11-23 (YYYY-MM-DD)", param_hint=param_hint) from None


def start_of_day(value: str | None, tz: tzinfo, param_hint: str = "--since") -> datetime | None:
    """Midnight at the start of a YYYY-MM-DD day in the digest's timezone."""
    day = parse_day(value, param_hint)
    return None if day is None else datetime.combine(day, time(), tzinfo=tz)


def new_group(name: str, help: str) -> typer.Typer:
    """A noun subgroup (`digest db ...`, `digest subscribers ...`) attached to the root command."""
    group = typer.Typer(cls=DigestGroup, help=help, no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(group, name=name)
    return group
