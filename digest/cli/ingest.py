"""`digest ingest` and `digest papers`: fetch the sources, and list what is stored."""

from __future__ import annotations

import json

import typer
from rich.console import Console

from digest import pipeline
from digest.cli.app import CliState, app, start_of_day
from digest.cli.progress import progress_bar
from digest.cli.tables import show_ingest_report, show_papers


@app.command()
def ingest(
    ctx: typer.Context,
    source: list[str] = typer.Option(None, "--source", "-s", help="Only this source (by name); repeat for more."),
) -> None:
    """Fetch the sources and store their new papers; exits 1 if any source failed."""
    state: CliState = ctx.obj
    with progress_bar(state.console, "Ingesting") as on_progress:
        report = pipeline.ingest(state.config, state.engine, source_names=source or None, on_progress=on_progress)
    show_ingest_report(report, Console())
    if report.failed:
        raise typer.Exit(1)


@app.command()
def papers(
    ctx: typer.Context,
    since: str = typer.Option(None, "--since", help="Only papers first seen on or after this date (YYYY-MM-DD)."),
    source: str = typer.Option(None, "--source", "-s", help="Only papers seen by this source."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per paper and line."),
) -> None:
    """List the stored papers, newest first."""
    state: CliState = ctx.obj
    listing = pipeline.paper_listing(state.engine, since=start_of_day(since, state.config.timezone), source=source)
    if as_json:
        for paper in listing:
            typer.echo(json.dumps(paper, ensure_ascii=False))
        return
    show_papers(listing, Console())
