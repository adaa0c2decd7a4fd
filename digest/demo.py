"""`digest demo`: the pipeline end to end, offline, on the sample feeds shipped in `digest/samples/`.

It writes a config in a working folder pointing its sources at the samples, starts a fresh SQLite database
there, and runs each stage in turn, printing what it did: ingest, themes and TL;DRs by the bundled model,
a rendered daily edition with its web archive, and delivery to two sample readers through the file transport.
"""

from __future__ import annotations

import os
import secrets
import shutil
from importlib.resources import files
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sqlalchemy import Engine

from digest import pipeline
from digest.config import Config, load_config
from digest.models import Edition
from digest.pipeline import IngestReport
from digest.render.archive import archive_folder
from digest.editions import write_outputs
from digest.store import get_engine, open_database, session_scope
from digest.store.subscribers import add_subscriber

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

[[themes]]
name = "Controllable image and video generation"
description = "Diffusion models that generate or edit images, video, 3D scenes or motion under user control."
keywords = ["diffusion", "ControlNet", "text-to-image", "image editing", "video generation", "motion generation"]
max_papers = 6

[[themes]]
name = "Prompting and efficient fine-tuning"
description = "Prompt engineering, prompt tuning and parameter-efficient fine-tuning of pretrained models."
keywords = ["prompt tuning", "prompt learning", "parameter-efficient", "PEFT", "prompting"]
max_papers = 6

[[themes]]
name = "Language model pretraining"
description = "How large language models are pretrained and continually pretrained: data, objectives, forgetting."
keywords = ["pretraining", "pre-training", "continual pre-training", "catastrophic forgetting"]
max_papers = 6

[assign]
# With the extractive summariser the demo runs no model at all: themes go by keywords alone.
similarity = {similarity}

[summariser]
backend = "{backend}"

[web]
secret_env = "DIGEST_DEMO_SECRET"

[email]
transport = "file"
outbox_dir = "outbox"
"""
DEMO_READERS = {
    "ada@example.org": [],
    "grace@example.org": ["Controllable image and video generation"],
}


def run_demo(workdir: Path, console: Console | None = None, backend: str = "transformers") -> Config:
    """Set up `workdir` from scratch and run every stage on the samples. Returns the demo's config."""
    console = console or Console()
    config = write_demo_config(workdir, backend)
    os.environ.setdefault(config.web.secret_env, secrets.token_hex(16))
    engine = open_database(config.database_url)

    console.print(f"[bold]1. Ingest[/bold] the sample feeds in {escape(str(SAMPLES))}")
    show_ingest_report(pipeline.ingest(config, engine), console)
    show_papers(pipeline.paper_listing(engine), console)

    console.print(f"[bold]2. Themes and TL;DRs[/bold] by the {escape(backend)} summariser ({escape(config.summariser.model)})")
    pipeline.assign_and_summarise(config, engine, progress=True)
    show_themes(pipeline.theme_listing(config, engine, top=3), console)

    console.print("[bold]3. Daily edition[/bold], with an overview per theme")
    edition = pipeline.build_edition(config, engine, "daily")
    show_overviews(edition, console)
    files = write_outputs(edition, ["html", "text", "md"], config.resolve(config.digest.output_dir))
    index = archive_folder(config) / "index.html"

    console.print(f"[bold]4. Delivery[/bold] to {len(DEMO_READERS)} sample readers through the file transport")
    add_readers(engine)
    console.print(pipeline.send_edition(config, engine, edition.id).summary())

    console.print("\n[bold]Open these:[/bold]")
    for label, path in [("Email (HTML)", files[0]), ("Plain text", files[1]), ("Markdown", files[2]),
                        ("Web archive", index), ("Sent messages (.eml)", config.resolve(config.email.outbox_dir))]:
        console.print(f"  {label:<22} {escape(str(path))}")
    return config


def write_demo_config(workdir: Path, backend: str) -> Config:
    """A config in `workdir` whose sources are the packaged samples, with nothing left from a past run."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.toml"
    similarity = "false" if backend == "extractive" else "true"
    text = DEMO_CONFIG.format(samples=SAMPLES.as_posix(), backend=backend, similarity=similarity)
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    get_engine(config.database_url).dispose()  # a past run in this process may hold the old file open
    for name in ("demo.db", "demo.db-wal", "demo.db-shm"):
        (workdir / name).unlink(missing_ok=True)
    for folder in ("digest-output", "outbox"):
        shutil.rmtree(workdir / folder, ignore_errors=True)
    return config


def add_readers(engine: Engine) -> None:
    """Two confirmed readers: one of every theme, one of a single theme (so personalisation shows)."""
    with session_scope(engine) as session:
        for email, themes in DEMO_READERS.items():
            add_subscriber(session, email, themes, "daily", status="confirmed", origin="demo")


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


def show_themes(listing: list[dict], console: Console) -> None:
    """Each theme with its paper count and top papers: title, TL;DR and why it ranks there."""
    table = Table("Theme", "Papers", "Top papers (TL;DR, why)", show_lines=True, title="Themes")
    for entry in listing:
        lines = [
            f"[bold]{escape(p['title'])}[/bold]\n{escape(p['tldr'] or '(no TL;DR)')}\n[dim]{escape(p['reason'])}[/dim]"
            for p in entry["top"]
        ]
        table.add_row(escape(entry["theme"]), str(entry["papers"]), "\n\n".join(lines) or "-")
    console.print(table)


def show_overviews(edition: Edition, console: Console) -> None:
    if edition.status != "ready":
        console.print(f"No edition: {escape(edition.empty_reason or '')}")
        return
    for theme in edition.content["themes"]:
        overview = theme["overview"]
        text = f"{overview['text']} [dim]({overview['method']})[/dim]" if overview else "(no overview)"
        console.print(f"[bold]{escape(theme['name'])}[/bold] ({len(theme['papers'])} papers): {text}")


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
