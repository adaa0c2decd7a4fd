"""Queries for editions: the fetches of a period, and storing, finding and listing editions."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.models import Delivery, Edition, FetchLog


def fetches_between(session: Session, start: datetime, end: datetime) -> list[FetchLog]:
    """Fetch log rows of the sources started in [start, end), oldest first."""
    query = (
        select(FetchLog)
        .where(FetchLog.started_at >= start, FetchLog.started_at < end)
        .order_by(FetchLog.started_at, FetchLog.id)
    )
    return list(session.scalars(query))


def find_edition(session: Session, period: str, start_date: date) -> Edition | None:
    return session.scalar(select(Edition).where(Edition.period == period, Edition.start_date == start_date))


def get_edition(session: Session, edition_id: int) -> Edition | None:
    return session.get(Edition, edition_id)


EDITION_FIELDS = ("end_date", "title", "status", "empty_reason", "content", "content_hash", "html", "text", "markdown",
                  "built_at")


def save_edition(session: Session, edition: Edition) -> Edition:
    """Store `edition` (a new, unsaved object) as its period's edition, replacing the one stored for the same
    period and start day if there is one; returns the stored row with its id."""
    stored = find_edition(session, edition.period, edition.start_date)
    if stored is None:
        session.add(edition)
        stored = edition
    else:
        for name in EDITION_FIELDS:
            setattr(stored, name, getattr(edition, name))
    session.flush()
    return stored


# Delivery statuses as `digest editions` counts them: pending and sending rows are both still queued.
TALLIES = {"pending": "queued", "sending": "queued", "sent": "sent", "failed": "failed", "skipped": "skipped"}
LISTED_COLUMNS = (Edition.id, Edition.period, Edition.start_date, Edition.end_date, Edition.title, Edition.status,
                  Edition.empty_reason, Edition.content, Edition.built_at)


def edition_records(session: Session) -> list[dict]:
    """Every stored edition as plain values, newest first: period, dates, status (and why it is empty), paper
    count, when it was built, and its deliveries counted as queued, sent, failed and skipped."""
    tallies = delivery_tallies(session)
    query = select(*LISTED_COLUMNS).order_by(Edition.end_date.desc(), Edition.start_date.asc(), Edition.id.desc())
    return [
        {
            "id": row.id,
            "period": row.period,
            "start": row.start_date.isoformat(),
            "end": row.end_date.isoformat(),
            "title": row.title,
            "status": row.status,
            "empty_reason": row.empty_reason,
            "papers": sum(len(theme["papers"]) for theme in row.content.get("themes", [])),
            "built_at": row.built_at.isoformat(),
            "deliveries": {name: tallies[row.id][name] for name in dict.fromkeys(TALLIES.values())},
        }
        for row in session.execute(query)
    ]


def delivery_tallies(session: Session) -> defaultdict[int, Counter[str]]:
    """Each edition's deliveries counted by the names in TALLIES (editions with none count zero of each)."""
    tallies: defaultdict[int, Counter[str]] = defaultdict(Counter)
    query = select(Delivery.edition_id, Delivery.status, func.count()).group_by(Delivery.edition_id, Delivery.status)
    for edition_id, status, count in session.execute(query):
        tallies[edition_id][TALLIES[status]] += count
    return tallies


def ready_editions(session: Session) -> list[Edition]:
    """Editions with papers, newest first (weekly before daily on the same start day)."""
    query = select(Edition).where(Edition.status == "ready").order_by(
        Edition.end_date.desc(), Edition.start_date.asc(), Edition.id.desc()
    )
    return list(session.scalars(query))
