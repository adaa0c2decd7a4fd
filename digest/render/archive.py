"""The static web archive: an index of editions, one page per edition with per-theme anchors, an Atom 1.0 feed
(`feed.xml`) and a JSON Feed 1.1 (`feed.json`). `digest serve` publishes the folder under `/archive/`."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment

from digest.config import Config
from digest.models import Edition
from digest.render.templating import render_template, template_environment
from digest.render.view import EditionView, edition_view

INDEX_TEMPLATE = "archive/index.html.j2"
PAGE_TEMPLATE = "archive/edition.html.j2"
FEED_ENTRY_TEMPLATE = "archive/feed_entry.html.j2"
ATOM_TEMPLATE = "archive/feed.xml.j2"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
FEED_ITEMS = 50


def archive_folder(config: Config) -> Path:
    """Where the archive lives unless told otherwise: `<[digest] output_dir>/archive`."""
    return config.resolve(config.digest.output_dir) / "archive"


def archive_url(config: Config) -> str:
    """The public address of the archive folder, ending in a slash."""
    return config.digest.base_url.rstrip("/") + "/archive/"


def write_archive(config: Config, editions: list[Edition], out_dir: Path) -> Path:
    """Write every page and both feeds for `editions` (newest first) into `out_dir`; return the index path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = template_environment(config)
    views = [edition_view(edition) for edition in editions]
    for view in views:
        write_file(out_dir / view.page_name, edition_page(config, env, view))
    entries = [(view, render_template(env, FEED_ENTRY_TEMPLATE, edition=view)) for view in views[:FEED_ITEMS]]
    write_file(out_dir / "feed.xml", atom_feed(config, env, entries))
    write_file(out_dir / "feed.json", json_feed(config, entries))
    index = out_dir / "index.html"
    write_file(index, render_template(env, INDEX_TEMPLATE, editions=views, digest=config.digest))
    return index


def edition_page(config: Config, env: Environment, view: EditionView) -> str:
    return render_template(env, PAGE_TEMPLATE, edition=view, digest=config.digest)


def write_file(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def feed_updated(entries: list[tuple[EditionView, str]]) -> datetime:
    """When the feed last changed: its newest entry's build time (the epoch for an empty feed)."""
    return max((view.built_at for view, _ in entries), default=datetime(1970, 1, 1, tzinfo=timezone.utc))


def atom_feed(config: Config, env: Environment, entries: list[tuple[EditionView, str]]) -> str:
    return render_template(
        env,
        ATOM_TEMPLATE,
        digest=config.digest,
        archive_url=archive_url(config),
        updated=rfc3339(feed_updated(entries)),
        entries=[(view, html, rfc3339(view.built_at)) for view, html in entries],
    )


def json_feed(config: Config, entries: list[tuple[EditionView, str]]) -> str:
    base = archive_url(config)
    feed = {
        "version": JSON_FEED_VERSION,
        "title": config.digest.title,
        "home_page_url": base,
        "feed_url": base + "feed.json",
        "description": f"Editions of {config.digest.title}: new research papers by theme, summarised.",
        "authors": [{"name": config.digest.title}],
        "language": "en",
        "items": [json_feed_item(base, view, html) for view, html in entries],
    }
    return json.dumps(feed, ensure_ascii=False, indent=2) + "\n"


def json_feed_item(base: str, view: EditionView, html: str) -> dict:
    themes = ", ".join(theme.name for theme in view.themes)
    return {
        "id": base + view.page_name,
        "url": base + view.page_name,
        "title": view.title,
        "content_html": html,
        "summary": f"{view.paper_count} papers: {themes}",
        "date_published": rfc3339(view.built_at),
        "tags": [theme.name for theme in view.themes],
    }


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
