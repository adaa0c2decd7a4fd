"""Papers, sightings and the fetch log: storing what the sources listed, and the queries that list papers.

`store_entries` is the hot path of ingest: per batch it loads the known papers with one query by key (and one by
normalised title for non-arXiv entries), inserts the new ones in bulk and updates the rest in bulk. The caller
runs it and `record_fetch` in one transaction, so a source's entries and its saved ETag commit together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update
from sqlalchemy.orm import Session, selectinload

from digest.models import FetchLog, Paper, Sighting, ThemeAssignment
from digest.sources import PaperEntry
from digest.sources.fetch import Validators

BATCH_SIZE = 500
SUCCESSFUL_FETCHES = ("ok", "empty", "partial", "not-modified")
PAPERS = Paper.__table__
SIGNALS = ("upvotes", "num_comments", "github_repo", "github_stars", "code_url", "thumbnail_url")


@dataclass
class StoredCounts:
    new: int = 0
    updated: int = 0


def store_entries(session: Session, source: str, entries: Sequence[PaperEntry], now: datetime) -> StoredCounts:
    """Insert new papers, update known ones (a newer version counts as updated, not new), record sightings."""
    counts = StoredCounts()
    unique = without_duplicates(entries)
    for start in range(0, len(unique), BATCH_SIZE):
        store_batch(session, source, unique[start : start + BATCH_SIZE], now, counts)
    return counts


def without_duplicates(entries: Sequence[PaperEntry]) -> list[PaperEntry]:
    """One entry per paper: the newest version of each key, and one per normalised title for non-arXiv entries."""
    by_key: dict[str, PaperEntry] = {}
    for entry in entries:
        known = by_key.get(entry.key)
        if known is None or (entry.version or 0) > (known.version or 0):
            by_key[entry.key] = entry
    titles: set[str] = set()
    unique = []
    for entry in by_key.values():
        if entry.arxiv_id is None:
            if entry.title_norm in titles:
                continue
            titles.add(entry.title_norm)
        unique.append(entry)
    return unique


def store_batch(session: Session, source: str, entries: list[PaperEntry], now: datetime, counts: StoredCounts) -> None:
    known = known_papers(session, entries)
    paper_ids = {key: row.id for key, row in known.items()}
    fresh = [entry for entry in entries if entry.key not in known]
    if fresh:
        # A Core executemany plus one lookup of the new ids costs about half of an ORM INSERT ... RETURNING.
        session.execute(insert(PAPERS), [new_paper_row(entry, now) for entry in fresh])
        new_ids = select(PAPERS.c.id, PAPERS.c.key).where(PAPERS.c.key.in_([entry.key for entry in fresh]))
        paper_ids.update({row.key: row.id for row in session.execute(new_ids)})
        counts.new += len(fresh)
    changes = [change for entry in entries if entry.key in known and (change := paper_changes(known[entry.key], entry))]
    if changes:
        counts.updated += sum("abstract" in change for change in changes)
        session.execute(update(Paper), changes)
    if known:
        seen_again = {row.id for row in known.values()}
        session.execute(update(Paper).where(Paper.id.in_(seen_again)).values(last_seen_at=now))
    record_sightings(session, source, entries, paper_ids, now)


KNOWN_COLUMNS = (Paper.id, Paper.key, Paper.version, Paper.title_norm, Paper.keywords, *(getattr(Paper, name) for name in SIGNALS))


def known_papers(session: Session, entries: list[PaperEntry]) -> dict[str, Row]:
    """Stored papers for these entries, by entry key: matched on key, or for non-arXiv entries on title."""
    keys = [entry.key for entry in entries]
    known = {row.key: row for row in session.execute(select(*KNOWN_COLUMNS).where(Paper.key.in_(keys)))}
    by_title = {entry.title_norm: entry.key for entry in entries if entry.arxiv_id is None and entry.key not in known}
    if by_title:
        query = select(*KNOWN_COLUMNS).where(Paper.title_norm.in_(by_title), Paper.arxiv_id.is_(None))
        for row in session.execute(query):
            known.setdefault(by_title[row.title_norm], row)
    return known


def new_paper_row(entry: PaperEntry, now: datetime) -> dict[str, Any]:
    return {
        "key": entry.key,
        "arxiv_id": entry.arxiv_id,
        "version": entry.version,
        "title": entry.title,
        "title_norm": entry.title_norm,
        "abstract": entry.abstract,
        "authors": entry.authors,
        "categories": entry.categories,
        "abs_url": entry.abs_url,
        "pdf_url": entry.pdf_url,
        "code_url": entry.code_url,
        "announce_type": entry.announce_type,
        "published_at": entry.published_at,
        "updated_at": entry.updated_at,
        "first_seen_at": now,
        "last_seen_at": now,
        "upvotes": entry.upvotes,
        "num_comments": entry.num_comments,
        "github_repo": entry.github_repo,
        "github_stars": entry.github_stars,
        "keywords": entry.keywords,
        "thumbnail_url": entry.thumbnail_url,
    }


def paper_changes(row: Row, entry: PaperEntry) -> dict[str, Any] | None:
    """The update a known paper needs, or None: signals (upvotes, stars...) that changed; the text and version
    when the entry is a newer version; version, categories and authors when only an unversioned source (Hugging
    Face, a blog) had listed it so far."""
    change: dict[str, Any] = {
        name: value for name in SIGNALS if (value := getattr(entry, name)) is not None and value != getattr(row, name)
    }
    if entry.keywords and entry.keywords != row.keywords:
        change["keywords"] = entry.keywords
    if entry.version and row.version is None:
        change.update(version=entry.version, **{name: getattr(entry, name) for name in ("categories", "authors") if getattr(entry, name)})
    elif entry.version and entry.version > row.version:
        change.update(
            version=entry.version,
            title=entry.title,
            title_norm=entry.title_norm,
            abstract=entry.abstract,
            updated_at=entry.updated_at or entry.published_at,
        )
    return {"id": row.id, **change} if change else None


def record_sightings(
    session: Session, source: str, entries: list[PaperEntry], paper_ids: dict[str, int], now: datetime
) -> None:
    """One sighting per paper and source: inserted the first time; after that its last-seen time moves on and
    its announce type follows the latest listing."""
    by_paper = {paper_ids[entry.key]: entry for entry in entries}
    query = select(Sighting.paper_id, Sighting.announce_type).where(
        Sighting.source == source, Sighting.paper_id.in_(by_paper)
    )
    seen_before = dict(session.execute(query).all())
    fresh = [sighting_row(paper_id, source, entry, now) for paper_id, entry in by_paper.items() if paper_id not in seen_before]
    if fresh:
        session.execute(insert(Sighting.__table__), fresh)
    if seen_before:
        session.execute(
            update(Sighting).where(Sighting.source == source, Sighting.paper_id.in_(seen_before)).values(last_seen_at=now)
        )
    retyped = [
        {"seen_paper_id": paper_id, "seen_announce_type": by_paper[paper_id].announce_type}
        for paper_id, announce_type in seen_before.items()
        if by_paper[paper_id].announce_type != announce_type
    ]
    if retyped:
        statement = (
            update(Sighting)
            .where(Sighting.source == source, Sighting.paper_id == bindparam("seen_paper_id"))
            .values(announce_type=bindparam("seen_announce_type"))
        )
        session.connection().execute(statement, retyped)


def sighting_row(paper_id: int, source: str, entry: PaperEntry, now: datetime) -> dict[str, Any]:
    return {"paper_id": paper_id, "source": source, "guid": entry.guid, "announce_type": entry.announce_type,
            "first_seen_at": now, "last_seen_at": now}  # fmt: skip


# --- Fetch log ----------------------------------------------------------------------------------------------


def record_fetch(session: Session, source: str, url: str, started_at: datetime, status: str, **fields: Any) -> None:
    """Add one fetch-log row. `fields` are FetchLog columns (http_status, etag, entries_new, error, ...)."""
    session.add(FetchLog(source=source, url=url, started_at=started_at, status=status, **fields))


def saved_validators(session: Session, source: str, url: str) -> Validators:
    """The ETag and Last-Modified of the newest successful fetch of this source and URL, for a conditional GET."""
    row = session.execute(
        select(FetchLog.etag, FetchLog.last_modified)
        .where(FetchLog.source == source, FetchLog.url == url, FetchLog.status.in_(SUCCESSFUL_FETCHES))
        .order_by(FetchLog.started_at.desc(), FetchLog.id.desc())
        .limit(1)
    ).first()
    return Validators(row.etag, row.last_modified) if row else Validators()


def fetch_history(session: Session, source: str) -> list[FetchLog]:
    """Every fetch of a source, oldest first."""
    return list(session.scalars(select(FetchLog).where(FetchLog.source == source).order_by(FetchLog.id)))


# --- Queries ------------------------------------------------------------------------------------------------


def papers_first_seen(
    session: Session,
    start: datetime | None = None,
    end: datetime | None = None,
    source: str | None = None,
    theme: str | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[Paper]:
    """Papers first seen in [start, end) (None leaves that side open), oldest first unless `newest_first`;
    only those seen by `source` or assigned to `theme` when given; at most `limit`. Sightings are loaded."""
    query = select(Paper).options(selectinload(Paper.sightings))
    if start is not None:
        query = query.where(Paper.first_seen_at >= start)
    if end is not None:
        query = query.where(Paper.first_seen_at < end)
    if source is not None:
        query = query.where(Paper.sightings.any(Sighting.source == source))
    if theme is not None:
        query = query.where(Paper.id.in_(select(ThemeAssignment.paper_id).where(ThemeAssignment.theme == theme)))
    order = (Paper.first_seen_at.desc(), Paper.id.desc()) if newest_first else (Paper.first_seen_at, Paper.id)
    return list(session.scalars(query.order_by(*order).limit(limit)))


def paper_to_dict(paper: Paper) -> dict[str, Any]:
    """A paper as plain JSON-ready data (`digest papers --json`); later stages add their own keys to it."""
    return {
        "id": paper.id,
        "key": paper.key,
        "arxiv_id": paper.arxiv_id,
        "version": paper.version,
        "title": paper.title,
        "abstract": paper.abstract,
        "authors": paper.authors,
        "categories": paper.categories,
        "links": {"abs": paper.abs_url, "pdf": paper.pdf_url, "code": paper.code_url},
        "sources": sorted(sighting.source for sighting in paper.sightings),
        "announce_type": paper.announce_type,
        "published_at": iso(paper.published_at),
        "updated_at": iso(paper.updated_at),
        "first_seen_at": iso(paper.first_seen_at),
        "signals": {
            "upvotes": paper.upvotes,
            "num_comments": paper.num_comments,
            "github_repo": paper.github_repo,
            "github_stars": paper.github_stars,
            "keywords": paper.keywords,
        },
        "thumbnail_url": paper.thumbnail_url,
    }


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
