"""Every database table, as SQLAlchemy 2.0 typed models on one `Base`.

Only Alembic (`migrations/`) creates or changes the schema; after editing a model, add a migration and check
`alembic check` shows no drift. Sections follow the pipeline: ingest, themes and summaries, editions, delivery.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON, list[int]: JSON}


# --- Ingest -------------------------------------------------------------------------------------------------


class Paper(Base):
    """One paper, whichever sources and versions it was seen in. `key` is the canonical id used for dedup:
    `arxiv:2406.01234` for arXiv papers (any version), else `url:<normalised link>`."""

    __tablename__ = "papers"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(512), unique=True)
    arxiv_id: Mapped[str | None] = mapped_column(String(64), index=True)
    version: Mapped[int | None]
    title: Mapped[str] = mapped_column(Text)
    title_norm: Mapped[str] = mapped_column(String(512), index=True)
    abstract: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[str]] = mapped_column(default=list)
    categories: Mapped[list[str]] = mapped_column(default=list)
    abs_url: Mapped[str | None] = mapped_column(Text)
    pdf_url: Mapped[str | None] = mapped_column(Text)
    code_url: Mapped[str | None] = mapped_column(Text)
    announce_type: Mapped[str | None] = mapped_column(String(32))
    published_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    upvotes: Mapped[int | None]
    num_comments: Mapped[int | None]
    github_repo: Mapped[str | None] = mapped_column(Text)
    github_stars: Mapped[int | None]
    keywords: Mapped[list[str]] = mapped_column(default=list)
    thumbnail_url: Mapped[str | None] = mapped_column(Text)

    sightings: Mapped[list[Sighting]] = relationship(back_populates="paper", cascade="all, delete-orphan")


class Sighting(Base):
    """Which source saw which paper, first and last when, and how that source announced it."""

    __tablename__ = "sightings"
    __table_args__ = (UniqueConstraint("paper_id", "source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(128), index=True)
    guid: Mapped[str | None] = mapped_column(Text)
    announce_type: Mapped[str | None] = mapped_column(String(32))
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    paper: Mapped[Paper] = relationship(back_populates="sightings")


class FetchLog(Base):
    """One row per fetch of a source. The newest successful row holds the ETag/Last-Modified for the next
    conditional GET; it is written in the same transaction as that fetch's entries."""

    __tablename__ = "fetch_log"
    __table_args__ = (Index("ix_fetch_log_source_started", "source", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(32))  # ok, not-modified, empty, partial, error
    http_status: Mapped[int | None]
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    entries_seen: Mapped[int] = mapped_column(default=0)
    entries_new: Mapped[int] = mapped_column(default=0)
    entries_updated: Mapped[int] = mapped_column(default=0)
    entries_invalid: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)


# --- Themes and summaries -----------------------------------------------------------------------------------


class Embedding(Base):
    """A paper's sentence embedding (float32 bytes), computed once per model and text."""

    __tablename__ = "embeddings"

    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(256), primary_key=True)
    text_hash: Mapped[str] = mapped_column(String(64))
    dim: Mapped[int]
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class ThemeAssignment(Base):
    """A paper placed in a theme, with the score and the human-readable reason the email shows."""

    __tablename__ = "theme_assignments"
    __table_args__ = (UniqueConstraint("paper_id", "theme"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    theme: Mapped[str] = mapped_column(String(256), index=True)
    score: Mapped[float] = mapped_column(Float)
    similarity: Mapped[float | None] = mapped_column(Float)
    matched_keywords: Mapped[list[str]] = mapped_column(default=list)
    reason: Mapped[str] = mapped_column(Text, default="")
    themes_hash: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)


class Summary(Base):
    """A generated text: a paper's TL;DR (`kind='tldr'`, `subject='paper:<id>'`) or a theme overview
    (`kind='overview'`, `subject='theme:<name>'`). Reused while model, backend, prompt version and source hash
    are unchanged. `method` records the path that produced it: model, model-strict (regenerated) or extractive."""

    __tablename__ = "summaries"
    __table_args__ = (UniqueConstraint("kind", "subject", "source_hash", "model", "backend", "prompt_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(512), index=True)
    paper_id: Mapped[int | None] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(32))
    grounded: Mapped[bool] = mapped_column(Boolean, default=True)
    problems: Mapped[list[str]] = mapped_column(default=list)
    cited_paper_ids: Mapped[list[int]] = mapped_column(default=list)
    model: Mapped[str] = mapped_column(String(512))
    backend: Mapped[str] = mapped_column(String(64))
    prompt_version: Mapped[str] = mapped_column(String(32))
    source_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SummaryClaim(Base):
    """A paper whose TL;DR one summarise worker is writing now, so that other workers (other processes or
    machines sharing the database) leave it alone. Deleted when the TL;DR is committed; a claim older than
    `[summariser] claim_lease_seconds` belongs to a worker that died and may be taken over."""

    __tablename__ = "summary_claims"

    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True)
    worker: Mapped[str] = mapped_column(String(128))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- Editions -----------------------------------------------------------------------------------------------


class Edition(Base):
    """A daily or weekly digest covering [start_date, end_date] in the configured timezone. `content` holds the
    themes with their overviews and ranked paper ids and reasons; `content_hash` tells whether a rebuild changed it."""

    __tablename__ = "editions"
    __table_args__ = (UniqueConstraint("period", "start_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(16))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    title: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # ready, empty
    empty_reason: Mapped[str | None] = mapped_column(Text)
    content: Mapped[dict[str, Any]] = mapped_column(default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))
    html: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    markdown: Mapped[str] = mapped_column(Text, default="")
    built_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- Subscribers and delivery -------------------------------------------------------------------------------


class Subscriber(Base):
    """A reader. `themes` empty means all themes; `frequency` is daily, weekly or both."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    themes: Mapped[list[str]] = mapped_column(default=list)
    frequency: Mapped[str] = mapped_column(String(16), default="daily")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    origin: Mapped[str] = mapped_column(String(64), default="cli")
    failures: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]


class Delivery(Base):
    """The outbox: one row per subscriber and edition, written before sending. A sender claims a row
    (status `sending`, `claimed_by`, `claimed_at`), sends it, then marks it `sent` with the server's reply."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("edition_id", "subscriber_id"),
        Index("ix_deliveries_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"), index=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, sending, sent, failed, skipped
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None] = mapped_column(index=True)
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- Scheduler ----------------------------------------------------------------------------------------------


class SchedulerLease(Base):
    """The single row (`name='scheduler'`, made by the first daemon) that says which `digest run` acts on this
    database. Its holder renews `expires_at` with a heartbeat; once that passes, a standby takes the lease over,
    so a holder killed without releasing it is replaced within one lease period."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None]
    acquired_at: Mapped[datetime | None]
    renewed_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]


class DaemonProcess(Base):
    """One running `digest run` (active or standby) and its last heartbeat; removed when it stops cleanly."""

    __tablename__ = "daemons"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    role: Mapped[str] = mapped_column(String(16))  # active, standby
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobRun(Base):
    """One run of a scheduler job (ingest, summarise, daily, weekly, send), written when it starts and
    finished with its outcome (ok, empty, skipped, failed, interrupted; `running` meanwhile), its counts and
    the error or reason in `detail`. `due_at` is the scheduled time the run is for (None when forced), so the
    daemon can tell from the database what is done and what is still due."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_job_due_at", "job", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))  # schedule, catch-up, once
    due_at: Mapped[datetime | None]
    edition_date: Mapped[date | None] = mapped_column(Date)
    edition_id: Mapped[int | None] = mapped_column(ForeignKey("editions.id", ondelete="SET NULL"))
    holder: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    detail: Mapped[str | None] = mapped_column(Text)
    papers_new: Mapped[int] = mapped_column(default=0)
    papers_updated: Mapped[int] = mapped_column(default=0)
    summaries_made: Mapped[int] = mapped_column(default=0)
    summaries_cached: Mapped[int] = mapped_column(default=0)
    summaries_fallback: Mapped[int] = mapped_column(default=0)
    messages_sent: Mapped[int] = mapped_column(default=0)
    messages_failed: Mapped[int] = mapped_column(default=0)
    messages_deferred: Mapped[int] = mapped_column(default=0)
