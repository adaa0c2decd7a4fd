"""Queries for editions: the fetches of a period, and storing, finding and listing editions."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.models import Edition, FetchLog


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


def ready_editions(session: Session) -> list[Edition]:
    """Editions with papers, newest first (weekly before daily on the same start day)."""
    query = select(Edition).where(Edition.status == "ready").order_by(
        Edition.end_date.desc(), Edition.start_date.asc(), Edition.id.desc()
    )
    return list(session.scalars(query))
