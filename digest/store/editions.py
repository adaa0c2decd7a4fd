"""Queries for editions: the papers and fetches of a period, and storing, finding and listing editions."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.models import Edition, FetchLog, Paper


def papers_first_seen(session: Session, start: datetime, end: datetime) -> list[Paper]:
    """Papers first seen in [start, end), oldest id first."""
    query = select(Paper).where(Paper.first_seen_at >= start, Paper.first_seen_at < end).order_by(Paper.id)
    return list(session.scalars(query))


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


def save_edition(session: Session, edition: Edition) -> Edition:
    """Insert a new edition or write the changes of a loaded one; returns it with its id."""
    session.add(edition)
    session.flush()
    return edition


def ready_editions(session: Session) -> list[Edition]:
    """Editions with papers, newest first (weekly before daily on the same start day)."""
    query = select(Edition).where(Edition.status == "ready").order_by(
        Edition.end_date.desc(), Edition.start_date.asc(), Edition.id.desc()
    )
    return list(session.scalars(query))
