"""`digest demo`: every stage offline on the sample feeds shipped with digest, showing what each one did."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from digest import pipeline
from digest.cli.app import CliState, app
from digest.cli.progress import progress_bar
from digest.cli.tables import show_ingest_report, show_overviews, show_papers, show_themes
from digest.demo import DEMO_READERS, SAMPLES, add_readers, prepare_demo
from digest.editions import write_outputs
from digest.render.archive import archive_folder


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
    out = Console()
    config, engine = prepare_demo(directory, backend)

    out.print(f"[bold]1. Ingest[/bold] the sample feeds in {escape(str(SAMPLES))}")
    with progress_bar(state.console, "Ingesting") as on_progress:
        show_ingest_report(pipeline.ingest(config, engine, on_progress=on_progress), out)
    show_papers(pipeline.paper_listing(engine), out)

    out.print(f"[bold]2. Themes and TL;DRs[/bold] by the {escape(backend)} summariser ({escape(config.summariser.model)})")
    with progress_bar(state.console, "Summarising", unit="papers") as on_progress:
        pipeline.assign_and_summarise(config, engine, on_progress=on_progress)
    show_themes(pipeline.theme_listing(config, engine, top=3), out)

    out.print("[bold]3. Daily edition[/bold], with an overview per theme")
    edition = pipeline.build_edition(config, engine, "daily")
    show_overviews(edition, out)
    files = write_outputs(edition, ["html", "text", "md"], config.resolve(config.digest.output_dir))

    out.print(f"[bold]4. Delivery[/bold] to {len(DEMO_READERS)} sample readers through the file transport")
    add_readers(engine)
    out.print(pipeline.send_edition(config, engine, edition.id).summary())

    out.print("\n[bold]Open these:[/bold]")
    for label, path in [("Email (HTML)", files[0]), ("Plain text", files[1]), ("Markdown", files[2]),
                        ("Web archive", archive_folder(config) / "index.html"),
                        ("Sent messages (.eml)", config.resolve(config.email.outbox_dir))]:
        out.print(f"  {label:<22} {escape(str(path))}")
    state.console.print(f"Demo files are in {escape(str(directory.resolve()))}")
