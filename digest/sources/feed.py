"""Any RSS or Atom feed (journals, blogs, preprint servers) through feedparser.

An entry linking to an arXiv abstract page gets the arXiv key; others get `url:<normalised link>` (or
`guid:<id>` when there is no link). The store also matches them by normalised title against other non-arXiv
papers."""

from __future__ import annotations

import hashlib
from datetime import date
from urllib.parse import parse_qsl, urlencode, urlsplit

import feedparser

from digest.config import SourceSettings
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
from digest.sources.xmlfeed import entry_time, parse_xml_feed

ARXIV_HOSTS = ("arxiv.org", "export.arxiv.org")
MAX_KEY_LENGTH = 512


def read_feed(source: SourceSettings, fetcher: Fetcher, validators: Validators, _today: date) -> Listing:
    return listing_from(fetcher.fetch(source.url, validators), parse_feed)


def parse_feed(content: bytes) -> Listing:
    parsed, problem = parse_xml_feed(content)
    return collect_entries(parsed.entries, feed_entry, problem)


def feed_entry(item: feedparser.FeedParserDict) -> PaperEntry:
    title = clean_text(item.get("title"))
    abstract = clean_text(item.get("summary") or first_content(item))
    require_title_and_abstract(title, abstract)
    link, guid = item.get("link") or None, item.get("id") or None
    entry = PaperEntry(
        key=entry_key(link, guid, title),
        title=title,
        abstract=abstract,
        authors=[name for author in item.get("authors", []) if (name := clean_name(author.get("name", "")))],
        categories=[tag["term"] for tag in item.get("tags", []) if tag.get("term")],
        abs_url=link,
        published_at=entry_time(item, "published_parsed", "updated_parsed"),
        updated_at=entry_time(item, "updated_parsed"),
        guid=guid,
    )
    arxiv_id, version = arxiv_link_id(link)
    if arxiv_id:
        entry.arxiv_id, entry.version = arxiv_id, version
        entry.abs_url, entry.pdf_url = arxiv_links(arxiv_id).values()
    return entry


def first_content(item: feedparser.FeedParserDict) -> str:
    contents = item.get("content") or []
    return contents[0].get("value", "") if contents else ""


def entry_key(link: str | None, guid: str | None, title: str) -> str:
    arxiv_id, _ = arxiv_link_id(link)
    if arxiv_id:
        return arxiv_key(arxiv_id)
    if link:
        return bounded_key("url", normalise_url(link))
    if guid:
        return bounded_key("guid", guid)
    raise InvalidEntry(f"{title[:80]!r} has neither a link nor an id")


def bounded_key(prefix: str, value: str) -> str:
    """`prefix:value`, or `prefix:sha256:<digest>` when that would not fit the 512-character key column."""
    key = f"{prefix}:{value}"
    return key if len(key) <= MAX_KEY_LENGTH else f"{prefix}:sha256:{hashlib.sha256(value.encode()).hexdigest()}"


def arxiv_link_id(link: str | None) -> tuple[str | None, int | None]:
    """The arXiv id of a link to an arXiv abstract or PDF page, else (None, None)."""
    if not link:
        return None, None
    parts = urlsplit(link)
    host = parts.netloc.lower().removeprefix("www.")
    if host not in ARXIV_HOSTS or not parts.path.startswith(("/abs/", "/pdf/")):
        return None, None
    return parse_arxiv_id(parts.path)


def normalise_url(link: str) -> str:
    """A link without scheme, `www.`, fragment, tracking parameters or trailing slash, host lower-cased:
    the same article linked two ways compares equal."""
    parts = urlsplit(link.strip())
    host = parts.netloc.lower().removeprefix("www.")
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("utm_")])
    return f"{host}{parts.path.rstrip('/')}" + (f"?{query}" if query else "")
