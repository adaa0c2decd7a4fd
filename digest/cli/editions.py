"""`digest build`, `digest editions`, `digest preview` and `digest archive`: editions as files, the stored
editions, a local preview and the web archive."""

from __future__ import annotations

import functools
import json
from enum import Enum
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import typer

from digest import pipeline
from digest.cli.app import CliState, app, parse_day
from digest.editions import write_outputs
from digest.render.archive import archive_folder


class Period(str, Enum):
    daily = "daily"
    weekly = "weekly"


class Format(str, Enum):
    html = "html"
    text = "text"
    md = "md"
    all = "all"


def output_folder(state: CliState, out: Path | None) -> Path:
    return out if out is not None else state.config.resolve(state.config.digest.output_dir)


@app.command()
def build(
    ctx: typer.Context,
    period: Period = typer.Option(Period.daily, "--period", help="Which edition: daily or weekly."),
    day: str = typer.Option(
        None, "--date", help="Day of the edition, YYYY-MM-DD. Default: today in [digest] timezone."
    ),
    output_format: Format = typer.Option(
        Format.all, "--format", help="Output to write: html (the email), text, md or all."
    ),
    out: Path = typer.Option(
        None, "--out", help="Folder for the files. Default: [digest] output_dir.", file_okay=False
    ),
    rebuild: bool = typer.Option(False, "--rebuild", help="Render and store the edition again even if unchanged."),
) -> None:
    """Build the daily or weekly edition, write its files and print their paths (nothing when it is empty)."""
    state: CliState = ctx.obj
    edition = pipeline.build_edition(state.config, state.engine, period.value, parse_day(day), rebuild=rebuild)
    if edition.status != "ready":
        state.console.print(f"No {period.value} edition for {edition.start_date}: {edition.empty_reason}")
        return
    formats = ["html", "text", "md"] if output_format is Format.all else [output_format.value]
    for path in write_outputs(edition, formats, output_folder(state, out)):
        typer.echo(str(path))


@app.command("editions")
def editions_list(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="One JSON object per edition and line.")
) -> None:
    """List the stored editions, newest first: period and dates, status (ready, or empty and why), papers, when
    it was built, and its deliveries (queued, sent, failed, skipped)."""
    state: CliState = ctx.obj
    listing = pipeline.edition_listing(state.engine)
    if as_json:
        for edition in listing:
            typer.echo(json.dumps(edition, ensure_ascii=False))
        return
    for edition in listing:
        typer.echo("\t".join(edition_line(edition)))


def edition_line(edition: dict) -> list[str]:
    """An edition's tab-separated fields: id, period, dates, status or why it is empty, papers, built, deliveries."""
    dates = edition["start"] if edition["start"] == edition["end"] else f"{edition['start']}..{edition['end']}"
    status = "ready" if edition["status"] == "ready" else f"{edition['status']}: {edition['empty_reason']}"
    deliveries = ", ".join(f"{count} {name}" for name, count in edition["deliveries"].items() if count)
    papers = f"{edition['papers']} paper{'' if edition['papers'] == 1 else 's'}"
    return [str(edition["id"]), edition["period"], dates, status, papers,
            f"built {edition['built_at'][:16].replace('T', ' ')}", deliveries or "no deliveries"]


@app.command()
def preview(
    ctx: typer.Context,
    period: Period = typer.Option(Period.daily, "--period", help="Which edition: daily or weekly."),
    day: str = typer.Option(None, "--date", help="Day of the edition, YYYY-MM-DD. Default: today."),
    port: int = typer.Option(8765, "--port", help="Port to serve on (localhost only); 0 picks a free one."),
    serve: bool = typer.Option(
        True, "--serve/--no-serve", help="Serve it on localhost, or only write it and print the path."
    ),
) -> None:
    """Build the latest edition (or show the newest one with papers) and serve its email on localhost."""
    state: CliState = ctx.obj
    edition = pipeline.latest_edition(state.config, state.engine, period.value, parse_day(day))
    folder = output_folder(state, None) / "preview"
    (path,) = write_outputs(edition, ["html"], folder)
    if not serve:
        typer.echo(str(path))
        return
    serve_folder(folder, port, path.name)


def serve_folder(folder: Path, port: int, page: str) -> None:
    """Serve `folder` on 127.0.0.1 until Ctrl-C, printing the page's URL."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    with ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        typer.echo(f"http://127.0.0.1:{server.server_address[1]}/{page}")
        typer.echo("Serving; press Ctrl-C to stop.", err=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


@app.command()
def archive(
    ctx: typer.Context,
    out: Path = typer.Option(
        None, "--out", help="Folder for the archive. Default: <[digest] output_dir>/archive.", file_okay=False
    ),
) -> None:
    """Write the static web archive (index, one page per edition, feed.xml, feed.json) and print the index path."""
    state: CliState = ctx.obj
    folder = out if out is not None else archive_folder(state.config)
    typer.echo(str(pipeline.write_archive(state.config, state.engine, folder)))
