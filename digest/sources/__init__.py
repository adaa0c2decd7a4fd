"""Sources: turn feed bytes into plain `PaperEntry` dataclasses. Never touches the database.

Each source kind (`arxiv-rss`, `arxiv-api`, `hf-daily`, `feed`) has a reader in `READERS` that fetches what it
needs through `fetch.Fetcher` and returns a `Listing`; `read_source` runs it and applies the source's filters.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from digest.config import SourceSettings
from digest.sources import arxiv, feed, hf
from digest.sources.entry import Listing, PaperEntry
from digest.sources.fetch import Fetcher, Validators

__all__ = ["READERS", "Listing", "PaperEntry", "keep_entry", "read_source"]

Reader = Callable[[SourceSettings, Fetcher, Validators, date], Listing]

READERS: dict[str, Reader] = {
    "arxiv-rss": arxiv.read_listing,
    "arxiv-api": arxiv.read_api,
    "hf-daily": hf.read_daily,
    "feed": feed.read_feed,
}


def read_source(source: SourceSettings, fetcher: Fetcher, validators: Validators, today: date) -> Listing:
    """Fetch and parse one source, then apply its filters. Raises FeedError when nothing usable came back."""
    listing = READERS[source.kind](source, fetcher, validators, today)
    listing.entries = [entry for entry in listing.entries if keep_entry(entry, source)]
    return listing


def keep_entry(entry: PaperEntry, source: SourceSettings) -> bool:
    """The source's filters: categories and announce types to keep, include and exclude keywords."""
    if source.categories and entry.categories and not set(entry.categories) & set(source.categories):
        return False
    if source.announce_types and entry.announce_type and entry.announce_type not in source.announce_types:
        return False
    text = f"{entry.title}\n{entry.abstract}".lower()
    if source.include and not any(word.lower() in text for word in source.include):
        return False
    return not any(word.lower() in text for word in source.exclude)
