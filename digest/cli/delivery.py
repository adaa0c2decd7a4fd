"""`digest subscribers ...`, `digest send`, `digest deliveries` and `digest serve`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from digest import pipeline
from digest.cli.app import CliState, app, new_group
from digest.cli.progress import progress_bar

subscribers = new_group("subscribers", "Add, list, remove, import and export subscribers.")

THEMES_HELP = "A theme to subscribe to (repeat for several; default: all themes)."
FREQUENCY_HELP = "daily, weekly or both."


@subscribers.command("add")
def subscribers_add(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="The subscriber's email address."),
    themes: list[str] = typer.Option([], "--themes", "-t", help=THEMES_HELP),
    frequency: str = typer.Option("daily", "--frequency", "-f", help=FREQUENCY_HELP),
    confirmed: bool = typer.Option(False, "--confirmed", help="Skip double opt-in (you have their consent)."),
) -> None:
    """Add a subscriber (pending until they confirm, unless --confirmed)."""
    state: CliState = ctx.obj
    added = pipeline.add_subscriber(state.config, state.engine, email, themes, frequency, confirmed)
    state.console.print(f"Added {added['email']} ({added['status']}, {added['frequency']}, "
                        f"themes: {', '.join(added['themes']) or 'all'})")


@subscribers.command("list")
def subscribers_list(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="One JSON object per line.")
) -> None:
    """List every subscriber with status, frequency and themes."""
    state: CliState = ctx.obj
    for record in pipeline.subscriber_listing(state.engine):
        if as_json:
            typer.echo(json.dumps(record))
        else:
            typer.echo(f"{record['email']}\t{record['status']}\t{record['frequency']}\t"
                       f"{', '.join(record['themes']) or 'all themes'}")


@subscribers.command("remove")
def subscribers_remove(ctx: typer.Context, email: str = typer.Argument(..., help="Address to delete.")) -> None:
    """Delete a subscriber and their delivery history."""
    state: CliState = ctx.obj
    pipeline.remove_subscriber(state.engine, email)
    state.console.print(f"Removed {email}")


@subscribers.command("import")
def subscribers_import(
    ctx: typer.Context,
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV file with a header row."),
) -> None:
    """Import subscribers from CSV (columns: email, and optionally status, themes separated by `;`,
    frequency). Every row is checked first; if any row is bad, nothing is imported and each bad row is listed."""
    state: CliState = ctx.obj
    count = pipeline.import_subscribers(state.config, state.engine, path)
    state.console.print(f"Imported {count} subscriber(s) from {path}")


@subscribers.command("export")
def subscribers_export(
    ctx: typer.Context,
    path: Path = typer.Argument(None, dir_okay=False, help="File to write (default: standard output)."),
) -> None:
    """Export every subscriber as CSV (the format `import` reads)."""
    state: CliState = ctx.obj
    if path is None:
        count = pipeline.export_subscribers(state.engine, sys.stdout)
    else:
        with path.open("w", encoding="utf-8", newline="") as out:
            count = pipeline.export_subscribers(state.engine, out)
    state.console.print(f"Exported {count} subscriber(s)")


@app.command()
def send(
    ctx: typer.Context,
    edition: int = typer.Option(None, "--edition", "-e", help="Edition id to send."),
    period: str = typer.Option(None, "--period", "-p", help="Send the newest daily or weekly edition."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Build every message but send and record nothing."),
    limit: int = typer.Option(None, "--limit", "-n", min=1, help="Send at most this many messages."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, max=64,
                                help="Sender processes sharing the outbox, each with its own mail connection "
                                "(more only help while the mail server keeps up)."),
) -> None:
    """Send an edition to its subscribers, exactly once each; safe to re-run after a crash, and to run on
    several machines at once."""
    state: CliState = ctx.obj
    edition_id = pipeline.edition_to_send(state.engine, edition, period)
    with progress_bar(state.console, "Sending", enabled=not dry_run) as on_progress:
        report = pipeline.send_edition(state.config, state.engine, edition_id, dry_run, limit, on_progress, workers)
    typer.echo(report.summary())


@app.command()
def deliveries(
    ctx: typer.Context,
    edition: int = typer.Option(None, "--edition", "-e", help="Only this edition."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Show what was sent to whom: status, attempts, server reply or error."""
    state: CliState = ctx.obj
    for record in pipeline.delivery_listing(state.engine, edition):
        if as_json:
            typer.echo(json.dumps(record))
        else:
            typer.echo(f"{record['edition_id']}\t{record['email']}\t{record['status']}\t{record['attempts']}\t"
                       f"{record['smtp_reply'] or record['error'] or ''}")


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option(None, "--host", help="Address to listen on (default: [web] host)."),
    port: int = typer.Option(None, "--port", help="Port to listen on (default: [web] port)."),
) -> None:
    """Run the web page: subscribe, confirm, preferences, unsubscribe and the edition archive."""
    import uvicorn

    from digest.web import create_app

    state: CliState = ctx.obj
    uvicorn.run(create_app(state.config), host=host or state.config.web.host, port=port or state.config.web.port)
