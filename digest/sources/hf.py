"""Hugging Face daily papers (`huggingface.co/api/daily_papers?date=YYYY-MM-DD`): a JSON list of items with a
`paper` object. Unknown fields are ignored and missing optional ones left empty. HF paper ids are arXiv ids,
so these papers share their key with the arXiv listings."""

from __future__ import annotations

import json
from datetime import date, datetime

from digest.config import SourceSettings
from digest.errors import FeedError
from digest.sources.arxiv import arxiv_key, arxiv_links, parse_arxiv_id
from digest.sources.entry import (
    InvalidEntry,
    Listing,
    PaperEntry,
    clean_name,
    clean_text,
    collect_entries,
    listing_from,
    require_title_and_abstract,
)
from digest.sources.fetch import Fetcher, Validators


def read_daily(source: SourceSettings, fetcher: Fetcher, validators: Validators, today: date) -> Listing:
    """The day's papers; a `{date}` in the URL is the source's `date`, else today."""
    url = source.url.replace("{date}", (source.date or today).isoformat())
    return listing_from(fetcher.fetch(url, validators), parse_daily)


def parse_daily(content: bytes) -> Listing:
    return collect_entries(load_items(content), daily_entry, label="item")


def load_items(content: bytes) -> list:
    try:
        items = json.loads(content.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise FeedError(f"invalid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        if content.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
            raise FeedError("not JSON: the response is an HTML page") from None
        raise FeedError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if isinstance(items, dict) and "error" in items:
        raise FeedError(f"Hugging Face says: {items['error']}")
    if not isinstance(items, list):
        raise FeedError(f"expected a JSON list of papers, got a JSON {type(items).__name__}")
    return items


def daily_entry(item: object) -> PaperEntry:
    if not isinstance(item, dict) or not isinstance(item.get("paper"), dict):
        raise InvalidEntry("no `paper` object")
    paper = item["paper"]
    title = clean_text(text(paper.get("title")) or text(item.get("title")))
    abstract = clean_text(text(paper.get("summary")) or text(item.get("summary")))
    require_title_and_abstract(title, abstract)
    arxiv_id, version = parse_arxiv_id(text(paper.get("id")))
    if arxiv_id is None:
        raise InvalidEntry(f"{title[:80]!r} has no arXiv id")
    repo = text(paper.get("githubRepo")) or None
    return PaperEntry(
        key=arxiv_key(arxiv_id),
        title=title,
        abstract=abstract,
        authors=author_names(paper.get("authors")),
        code_url=repo,
        published_at=timestamp(paper.get("publishedAt") or item.get("publishedAt")),
        arxiv_id=arxiv_id,
        version=version,
        upvotes=integer(paper.get("upvotes")),
        num_comments=integer(item.get("numComments")),
        github_repo=repo,
        github_stars=integer(paper.get("githubStars")),
        keywords=[clean_text(word) for word in listed(paper.get("ai_keywords")) if isinstance(word, str)],
        thumbnail_url=text(item.get("thumbnail")) or None,
        guid=text(paper.get("id")),
        **arxiv_links(arxiv_id),
    )


def text(value: object) -> str:
    return value if isinstance(value, str) else ""


def integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def listed(value: object) -> list:
    return value if isinstance(value, list) else []


def author_names(authors: object) -> list[str]:
    names = (clean_name(text(author.get("name"))) for author in listed(authors) if isinstance(author, dict))
    return [name for name in names if name]


def timestamp(value: object) -> datetime | None:
    """An ISO 8601 time such as `2024-06-03T17:59:59.000Z`, or None when missing or unreadable."""
    try:
        parsed = datetime.fromisoformat(text(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None
