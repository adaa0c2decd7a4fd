"""`digest ingest`, `digest papers` and `digest demo`: fetch the sources, list what is stored, try it offline."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from digest import pipeline
from digest.cli.app import CliState, app, start_of_day
from digest.demo import run_demo, show_ingest_report, show_papers


@app.command()
def ingest(
    ctx: typer.Context,
    source: list[str] = typer.Option(None, "--source", "-s", help="Only this source (by name); repeat for more."),
) -> None:
    """Fetch the sources and store their new papers; exits 1 if any source failed."""
    state: CliState = ctx.obj
    report = pipeline.ingest(state.config, state.engine, source_names=source or None, progress=True)
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


@app.command()
def demo(
    ctx: typer.Context,
    directory: Path = typer.Option(
        Path("digest-demo"), "--dir", file_okay=False, help="Working folder for the demo's config and database."
    ),
    backend: str = typer.Option(
        "transformers",
        "--backend",
        help="Summariser: transformers (the bundled SmolLM2 model, about a minute on a laptop CPU) or "
        "extractive (no model, instant).",
    ),
) -> None:
    """Run every stage offline on the sample feeds shipped with digest, in a fresh working folder: ingest,
    themes and TL;DRs, a rendered daily edition with its web archive, and delivery to two sample readers
    as .eml files. Prints the paths to open."""
    state: CliState = ctx.obj
    run_demo(directory, Console(), backend=backend)
    state.console.print(f"Demo files are in {escape(str(directory.resolve()))}")
