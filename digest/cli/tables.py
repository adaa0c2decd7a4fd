"""The tables and short reports the commands print (rich markup, escaped): what each stage did, shown once
here so `digest ingest`, `digest papers`, `digest themes` and `digest demo` agree."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from digest.models import Edition
from digest.pipeline import IngestReport


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


def show_themes(listing: list[dict], console: Console) -> None:
    """Each theme with its paper count and top papers: title, TL;DR (once written) and why it ranks there."""
    table = Table("Theme", "Papers", "Top papers (TL;DR, why)", show_lines=True, title="Themes")
    for entry in listing:
        lines = [
            f"[bold]{escape(p['title'])}[/bold]\n{escape(p['tldr'] or '(no TL;DR yet)')}\n[dim]{escape(p['reason'])}[/dim]"
            for p in entry["top"]
        ]
        table.add_row(escape(entry["theme"]), str(entry["papers"]), "\n\n".join(lines) or "-")
    console.print(table)


def show_overviews(edition: Edition, console: Console) -> None:
    """Each theme of an edition with its paper count and overview (and how the overview was written)."""
    if edition.status != "ready":
        console.print(f"No edition: {escape(edition.empty_reason or '')}")
        return
    for theme in edition.content["themes"]:
        overview = theme["overview"]
        text = f"{escape(overview['text'])} [dim]({overview['method']})[/dim]" if overview else "(no overview)"
        console.print(f"[bold]{escape(theme['name'])}[/bold] ({len(theme['papers'])} papers): {text}")

