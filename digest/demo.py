"""`digest demo`: the pipeline end to end, offline, on the sample feeds shipped in `digest/samples/`.

It writes a config in a working folder pointing its sources at the samples, starts a fresh SQLite database
there, and runs each stage in turn, printing what it did. Later stages add their step to `run_demo`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from digest import pipeline
from digest.config import Config, load_config
from digest.pipeline import IngestReport
from digest.store import open_database

SAMPLES = Path(str(files("digest") / "samples"))
DEMO_CONFIG = """# Written by `digest demo`: the sample feeds shipped with digest, read from disk.
[digest]
title = "Demo research digest"

[database]
url = "sqlite:///demo.db"

[[sources]]
name = "arxiv-api"
kind = "arxiv-api"
url = "{samples}/arxiv-api.xml"
query = "cat:cs.CL OR cat:cs.CV"

[[sources]]
name = "arxiv-rss"
kind = "arxiv-rss"
url = "{samples}/arxiv-rss.xml"

[[sources]]
name = "hf-daily"
kind = "hf-daily"
url = "{samples}/hf-daily.json"
"""


def run_demo(workdir: Path, console: Console | None = None) -> Config:
    """Set up `workdir` from scratch, ingest the samples and list the papers. Returns the demo's config."""
    console = console or Console()
    config = write_demo_config(workdir)
    engine = open_database(config.database_url)
    console.print(f"[bold]1. Ingest[/bold] the sample feeds in {escape(str(SAMPLES))}")
    report = pipeline.ingest(config, engine, progress=False)
    show_ingest_report(report, console)
    show_papers(pipeline.paper_listing(engine), console)
    return config


def write_demo_config(workdir: Path) -> Config:
    """A config in `workdir` whose sources are the packaged samples, with no database left from a past run."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("demo.db", "demo.db-wal", "demo.db-shm"):
        (workdir / name).unlink(missing_ok=True)
    path = workdir / "config.toml"
    path.write_text(DEMO_CONFIG.format(samples=SAMPLES.as_posix()), encoding="utf-8")
    return load_config(path)


def show_ingest_report(report: IngestReport, console: Console) -> None:
    """One row per source (status, entries seen, new, updated, invalid), then each source's problem in full."""
    table = Table("Source", "Status", "Seen", "New", "Updated", "Invalid", title="Ingest")
    for result in report.results:
        status = f"[red]{result.status}[/red]" if result.failed else result.status
        counts = (result.seen, result.new, result.updated, result.invalid)
        table.add_row(escape(result.source), status, *map(str, counts))
    console.print(table)
    for result in report.results:
        if result.error:
            console.print(f"[red]{escape(result.source)}[/red]: {escape(result.error)}", soft_wrap=True)


def show_papers(papers: list[dict], console: Console) -> None:
    """The papers as a table: first seen, id, title, sources and how they were announced."""
    table = Table(title=f"{len(papers)} papers")
    for name in ("First seen", "Key", "Title", "Sources", "Type"):
        table.add_column(name, no_wrap=name != "Title", ratio=1 if name == "Title" else None)
    for paper in papers:
        table.add_row(
            paper["first_seen_at"][:10],
            escape(paper["key"]),
            escape(paper["title"]),
            escape("\n".join(paper["sources"])),
            paper["announce_type"] or "",
        )
    console.print(table)
