"""`digest themes` and `digest summarise`: show how papers fall into themes, and write their TL;DRs."""

from __future__ import annotations

import json

import typer
from rich.console import Console

from digest import pipeline
from digest.cli.app import CliState, app, start_of_day
from digest.cli.progress import progress_bar
from digest.cli.tables import show_themes
from digest.errors import ConfigError


@app.command()
def themes(
    ctx: typer.Context,
    top: int = typer.Option(3, "--top", min=0, help="Top papers shown per theme."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per theme and line."),
) -> None:
    """Show the themes with their paper counts and top-ranked papers (as assigned so far)."""
    state: CliState = ctx.obj
    listing = pipeline.theme_listing(state.config, state.engine, top=top)
    if as_json:
        for entry in listing:
            typer.echo(json.dumps(entry))
        return
    show_themes(listing, Console())


@app.command()
def summarise(
    ctx: typer.Context,
    since: str = typer.Option(None, "--since", help="Only papers first seen on or after this date (YYYY-MM-DD)."),
    theme: str = typer.Option(None, "--theme", help="Only papers assigned to this theme."),
    limit: int = typer.Option(None, "--limit", min=1, help="At most this many papers, newest first."),
    force: bool = typer.Option(False, "--force", help="Rewrite TL;DRs even where a current one is stored."),
) -> None:
    """Assign new papers to themes and write the TL;DRs that are missing, with a progress bar."""
    state: CliState = ctx.obj
    config = state.config
    if theme is not None and theme not in config.theme_names:
        raise ConfigError(f"no theme named {theme!r} in {config.path} (known: {', '.join(config.theme_names)})")
    with progress_bar(state.console, "Summarising", unit="papers") as on_progress:
        report = pipeline.summarise(
            config, state.engine, since=start_of_day(since, config.timezone), theme=theme, limit=limit, force=force,
            on_progress=on_progress,
        )
    methods = ", ".join(f"{n} {m}" for m, n in sorted(report.methods.items())) or "none"
    elsewhere = f", {report.elsewhere} left to other workers" if report.elsewhere else ""
    vague = (f"; {report.vague} vague, {report.replaced_vague} of them replaced by the abstract's own sentence"
             if report.vague else "")
    state.console.print(f"{report.papers} papers: {report.written} summarised ({methods}), {report.reused} already done"
                        f"{elsewhere}{vague}")
