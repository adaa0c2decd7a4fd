"""arXiv: the daily RSS 2.0 / Atom listings (`rss.arxiv.org`) and the search API (`export.arxiv.org/api/query`).

Every arXiv paper gets the key `arxiv:<id without version>`, so the same paper from any listing, version or the
Hugging Face daily papers is one row.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import feedparser

from digest.config import SourceSettings
from digest.errors import FeedError
from digest.sources.entry import (
    InvalidEntry,
    Listing,
    PaperEntry,
    clean_name,
    clean_text,
    collect_entries,
    listing_from,
    require_title_and_abstract,
    split_authors,
)
from digest.sources.fetch import Fetcher, Validators
from digest.sources.xmlfeed import entry_time, parse_xml_feed

ARXIV_ID = re.compile(r"(\d{4}\.\d{4,5}|[a-z][a-z.-]*(?:\.[A-Z]{2})?/\d{7})(?:v(\d+))?")
ANNOUNCE_TYPE = re.compile(r"Announce Type:\s*([\w-]+)")
FEED_ERROR = "Feed error for query"


def arxiv_key(arxiv_id: str) -> str:
    return f"arxiv:{arxiv_id}"


def parse_arxiv_id(text: str) -> tuple[str | None, int | None]:
    """The id and version in `oai:arXiv.org:2406.01234v2`, `https://arxiv.org/abs/2406.01234v2` or `2406.01234`."""
    match = ARXIV_ID.search(text or "")
    if not match:
        return None, None
    return match.group(1), int(match.group(2)) if match.group(2) else None


def arxiv_links(arxiv_id: str) -> dict[str, str]:
    return {"abs_url": f"https://arxiv.org/abs/{arxiv_id}", "pdf_url": f"https://arxiv.org/pdf/{arxiv_id}"}


# --- Daily listings (RSS 2.0 and Atom) ---------------------------------------------------------------------


def read_listing(source: SourceSettings, fetcher: Fetcher, validators: Validators, _today: date) -> Listing:
    return listing_from(fetcher.fetch(source.url, validators), parse_listing)


def parse_listing(content: bytes) -> Listing:
    """An arXiv RSS or Atom listing. An empty listing (weekends, holidays) is a valid, empty Listing."""
    parsed, problem = parse_xml_feed(content)
    raise_feed_error(parsed)
    return collect_entries(parsed.entries, listing_entry, problem)


def raise_feed_error(parsed: feedparser.FeedParserDict) -> None:
    """arXiv answers an unknown category with a normal-looking feed whose title or item says so."""
    texts = [parsed.feed.get("title", ""), parsed.feed.get("description", "")]
    texts += [item.get("title", "") for item in parsed.entries[:1]]
    for text in texts:
        if FEED_ERROR.lower() in text.lower():
            raise FeedError(f"arXiv says: {clean_text(text)}")


def listing_entry(item: feedparser.FeedParserDict) -> PaperEntry:
    title = clean_text(item.get("title"))
    description = item.get("summary", "")
    abstract = clean_text(description.split("Abstract:", 1)[1] if "Abstract:" in description else description)
    require_title_and_abstract(title, abstract)
    guid = item.get("id", "")
    arxiv_id, version = parse_arxiv_id(guid or item.get("link", ""))
    if arxiv_id is None:
        raise InvalidEntry(f"{title[:80]!r} has no arXiv id")
    return PaperEntry(
        key=arxiv_key(arxiv_id),
        title=title,
        abstract=abstract,
        authors=split_authors(item.get("author", "")),
        categories=[tag["term"] for tag in item.get("tags", []) if tag.get("term")],
        announce_type=announce_type(item, description),
        published_at=entry_time(item, "published_parsed", "updated_parsed"),
        arxiv_id=arxiv_id,
        version=version or version_in(description),
        guid=guid or None,
        **arxiv_links(arxiv_id),
    )


def announce_type(item: feedparser.FeedParserDict, description: str) -> str | None:
    """`arxiv:announce_type`, or the `Announce Type:` line of the description when the element is missing."""
    if value := item.get("arxiv_announce_type"):
        return value.strip()[:32]
    match = ANNOUNCE_TYPE.search(description[:120])
    return match.group(1) if match else None


def version_in(description: str) -> int | None:
    """The version in a listing's description line `arXiv:2406.01234v2 Announce Type: replace`."""
    return parse_arxiv_id(description[:64])[1]


# --- Search API (paged Atom) -------------------------------------------------------------------------------


def read_api(source: SourceSettings, fetcher: Fetcher, _validators: Validators, today: date) -> Listing:
    """All pages of the source's query for the last `days` days, at most `max_results` papers, one request per
    `arxiv_api_interval_seconds`. A local file is one page."""
    query = {"search_query": api_query(source, today), "sortBy": "submittedDate", "sortOrder": "descending"}
    listing, start = Listing(), 0
    while start < source.max_results:
        size = min(source.page_size, source.max_results - start)
        if not fetcher.is_local(source.url):
            fetcher.pace("arxiv-api", fetcher.settings.arxiv_api_interval_seconds)
        fetched = fetcher.fetch(source.url, params={**query, "start": start, "max_results": size})
        page, total = parse_api_page(fetched.content)
        listing.entries += page.entries
        listing.invalid += page.invalid
        listing.problem = listing.problem or page.problem
        listing.http_status = fetched.http_status
        start += size
        if fetched.is_local or page.seen < size or start >= total:
            break
    return listing


def api_query(source: SourceSettings, today: date) -> str:
    """The arXiv search query: the source's `query` (or its categories), limited to the submission dates."""
    topic = source.query or " OR ".join(f"cat:{category}" for category in source.categories)
    if not topic:
        raise FeedError("an arxiv-api source needs `query` or `categories`")
    first = today - timedelta(days=source.days)
    return f"({topic}) AND submittedDate:[{first:%Y%m%d}0000 TO {today:%Y%m%d}2359]"


def parse_api_page(content: bytes) -> tuple[Listing, int]:
    """One page of API results and the total the query matched."""
    parsed, problem = parse_xml_feed(content)
    for item in parsed.entries:
        if item.get("title", "").strip() == "Error":
            raise FeedError(f"arXiv API error: {clean_text(item.get('summary')) or item.get('id', '')}")
    listing = collect_entries(parsed.entries, api_entry, problem)
    total = parsed.feed.get("opensearch_totalresults", "")
    return listing, int(total) if str(total).isdigit() else listing.seen


def api_entry(item: feedparser.FeedParserDict) -> PaperEntry:
    title = clean_text(item.get("title"))
    abstract = clean_text(item.get("summary"))
    require_title_and_abstract(title, abstract)
    arxiv_id, version = parse_arxiv_id(item.get("id", ""))
    if arxiv_id is None:
        raise InvalidEntry(f"{title[:80]!r} has no arXiv id")
    pdf = [link["href"] for link in item.get("links", []) if link.get("title") == "pdf" and link.get("href")]
    links = arxiv_links(arxiv_id)
    return PaperEntry(
        key=arxiv_key(arxiv_id),
        title=title,
        abstract=abstract,
        authors=[name for author in item.get("authors", []) if (name := clean_name(author.get("name", "")))],
        categories=[tag["term"] for tag in item.get("tags", []) if tag.get("term")],
        published_at=entry_time(item, "published_parsed"),
        updated_at=entry_time(item, "updated_parsed"),
        arxiv_id=arxiv_id,
        version=version,
        guid=item.get("id"),
        abs_url=links["abs_url"],
        pdf_url=pdf[0] if pdf else links["pdf_url"],
    )
