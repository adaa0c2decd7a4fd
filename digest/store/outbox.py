"""The delivery outbox: every query that reads or writes `deliveries`.

Exactly-once rests on three statements here: `queue_edition` writes one outbox row per subscriber and edition
(unique) before anything is sent; `claim_batch` hands rows to one sender only (BEGIN IMMEDIATE on SQLite,
`FOR UPDATE SKIP LOCKED` on PostgreSQL); `mark_sent` records the server's reply in its own commit.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digest.errors import DeliveryError
from digest.models import Delivery, Edition, Subscriber, utcnow

QUEUE_CHUNK = 1000
CLAIM_LOCK_KEY = 0x64696765  # "dige": the advisory lock that serialises claims on PostgreSQL


@dataclass(frozen=True)
class Claim:
    """One outbox row handed to one sender, with what it needs to build the message."""

    delivery_id: int
    message_id: str
    subscriber_id: int
    email: str
    themes: list[str]
    attempts: int


def edition_theme_names(edition: Edition) -> set[str]:
    return {theme["name"] for theme in edition.content.get("themes", [])}


def eligible_subscribers(session: Session, edition: Edition) -> Iterator[Subscriber]:
    """Confirmed subscribers whose frequency takes this edition's period and whose themes overlap its themes
    (no themes chosen = all), streamed in id order. None for an edition that is not ready (empty)."""
    if edition.status != "ready":
        return
    themes = edition_theme_names(edition)
    query = (
        select(Subscriber)
        .where(Subscriber.status == "confirmed", Subscriber.frequency.in_((edition.period, "both")))
        .order_by(Subscriber.id)
        .execution_options(yield_per=QUEUE_CHUNK)
    )
    for subscriber in session.scalars(query):
        if not subscriber.themes or themes.intersection(subscriber.themes):
            yield subscriber


def new_message_id(edition_id: int, subscriber_id: int, domain: str) -> str:
    """A Message-ID fixed when the outbox row is written, so every retry of that row carries the same one."""
    return f"<digest.{edition_id}.{subscriber_id}.{secrets.token_hex(8)}@{domain}>"


def queue_edition(session: Session, edition: Edition, domain: str) -> int:
    """Write the outbox rows this edition still lacks, in bulk; return how many were added."""
    before = edition_row_count(session, edition.id)
    chunk: list[int] = []
    for subscriber in eligible_subscribers(session, edition):
        chunk.append(subscriber.id)
        if len(chunk) == QUEUE_CHUNK:
            insert_missing_rows(session, edition.id, chunk, domain)
            chunk = []
    if chunk:
        insert_missing_rows(session, edition.id, chunk, domain)
    return edition_row_count(session, edition.id) - before


def edition_row_count(session: Session, edition_id: int) -> int:
    return session.scalar(select(func.count()).where(Delivery.edition_id == edition_id))


def insert_missing_rows(session: Session, edition_id: int, subscriber_ids: list[int], domain: str) -> None:
    """Insert outbox rows; a row another sender queued meanwhile is left as it is (never a second one)."""
    now = utcnow()
    values = [
        {
            "edition_id": edition_id,
            "subscriber_id": subscriber_id,
            "message_id": new_message_id(edition_id, subscriber_id, domain),
            "status": "pending",
            "attempts": 0,
            "created_at": now,
        }
        for subscriber_id in subscriber_ids
    ]
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(Delivery).on_conflict_do_nothing(index_elements=["edition_id", "subscriber_id"])
    session.connection().execute(statement, values)


def claim_batch(
    session: Session, edition_id: int, worker: str, size: int, lease_seconds: float
) -> tuple[list[Claim], int]:
    """Hand up to `size` due rows to `worker`: pending rows whose retry time has come, and `sending` rows whose
    sender died (claimed longer ago than the lease). Rows whose subscriber left since queueing are marked
    skipped instead. Run inside its own transaction: the lock (BEGIN IMMEDIATE / SKIP LOCKED) keeps two
    senders from ever claiming one row. Returns the claims and how many rows were skipped."""
    now = utcnow()
    due = or_(
        and_(Delivery.status == "pending", or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now)),
        and_(Delivery.status == "sending", Delivery.claimed_at < now - timedelta(seconds=lease_seconds)),
    )
    query = (
        select(
            Delivery.id.label("delivery_id"),
            Delivery.message_id,
            Delivery.attempts,
            Subscriber.id.label("subscriber_id"),
            Subscriber.email,
            Subscriber.themes,
            Subscriber.status.label("subscriber_status"),
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.edition_id == edition_id, due)
        .order_by(Delivery.id)
        .limit(size)
    )
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Delivery)
    rows = session.execute(query).all()
    gone = [row for row in rows if row.subscriber_status != "confirmed"]
    for row in gone:
        finish(session, row.delivery_id, None, "skipped", error=f"subscriber {row.subscriber_status}")
    claims = [
        Claim(row.delivery_id, row.message_id, row.subscriber_id, row.email, row.themes, attempts=row.attempts + 1)
        for row in rows
        if row.subscriber_status == "confirmed"
    ]
    if claims:
        session.execute(
            plain_update()
            .where(Delivery.id.in_([claim.delivery_id for claim in claims]))
            .values(status="sending", claimed_by=worker, claimed_at=now, attempts=Delivery.attempts + 1)
        )
    return claims, len(gone)


def plain_update():
    """An UPDATE of outbox rows that skips the ORM's in-session synchronisation (nothing here holds them)."""
    return update(Delivery).execution_options(synchronize_session=False)


def owned(delivery_id: int, worker: str | None):
    """The row, only while `worker` still holds its claim (None: whoever holds it)."""
    condition = Delivery.id == delivery_id
    return condition if worker is None else and_(condition, Delivery.claimed_by == worker, Delivery.status == "sending")


def finish(session: Session, delivery_id: int, worker: str | None, status: str, error: str | None = None) -> None:
    session.execute(plain_update().where(owned(delivery_id, worker)).values(status=status, error=error))


def mark_sent(connection: Connection | Session, delivery_id: int, worker: str, reply: str) -> None:
    """Record the server's acceptance; call in its own commit right after the reply (a bare Connection is
    enough and is the cheapest: this runs once per message)."""
    connection.execute(
        plain_update()
        .where(owned(delivery_id, worker))
        .values(status="sent", sent_at=utcnow(), smtp_reply=reply, error=None)
    )


def mark_retry(session: Session, delivery_id: int, worker: str, error: str, at: datetime) -> None:
    """Put the row back for another attempt at `at` (a 4xx reply or a dropped connection)."""
    session.execute(
        plain_update().where(owned(delivery_id, worker)).values(status="pending", next_attempt_at=at, error=error)
    )


def mark_failed(session: Session, delivery_id: int, worker: str, error: str, bounce_after: int | None) -> bool:
    """Give up on the row. With `bounce_after` (a permanent failure), count it against the subscriber and mark
    them bounced at that count; return True if they were bounced now."""
    finish(session, delivery_id, worker, "failed", error)
    if bounce_after is None:
        return False
    subscriber_id = session.scalar(select(Delivery.subscriber_id).where(Delivery.id == delivery_id))
    subscriber = session.get(Subscriber, subscriber_id)
    subscriber.failures += 1
    if subscriber.failures >= bounce_after and subscriber.status == "confirmed":
        subscriber.status = "bounced"
        return True
    return False


def release_claims(session: Session, worker: str) -> int:
    """Hand back every row this worker claimed but did not send (the run is stopping); attempts are not counted."""
    return session.execute(
        plain_update()
        .where(Delivery.claimed_by == worker, Delivery.status == "sending")
        .values(status="pending", attempts=Delivery.attempts - 1)
    ).rowcount


def skip_unsent(session: Session, edition_id: int, reason: str) -> int:
    """Mark every row of the edition that is not sent or claimed as skipped (e.g. the edition is too old)."""
    return session.execute(
        plain_update()
        .where(Delivery.edition_id == edition_id, Delivery.status == "pending")
        .values(status="skipped", error=reason)
    ).rowcount


def lock_claims(session: Session) -> None:
    """Serialise claiming across senders for the rest of this transaction, so the rate counts read next
    cannot be spent twice. SQLite's BEGIN IMMEDIATE already does; PostgreSQL takes a transaction advisory lock."""
    if session.bind.dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK_KEY)))


def rate_usage(session: Session, now: datetime, window_seconds: float, lease_seconds: float) -> tuple[int, int, datetime | None]:
    """Messages counted against the rate limits: those sent (by any sender, in any run) in the last
    `window_seconds` and in the last hour, each plus the rows claimed and in flight now; and the oldest send
    in the window (when it leaves the window, room frees up). Read from the database, so limits hold across
    restarts."""
    in_flight = session.scalar(
        select(func.count()).where(Delivery.status == "sending",
                                   Delivery.claimed_at > now - timedelta(seconds=lease_seconds))
    )
    in_window, oldest = session.execute(
        select(func.count(), func.min(Delivery.sent_at)).where(Delivery.sent_at > now - timedelta(seconds=window_seconds))
    ).one()
    in_hour = session.scalar(select(func.count()).where(Delivery.sent_at > now - timedelta(hours=1)))
    return in_window + in_flight, in_hour + in_flight, oldest


def status_counts(session: Session, edition_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Delivery.status, func.count()).where(Delivery.edition_id == edition_id).group_by(Delivery.status)
    )
    return dict(rows.all())


def edition_to_send(session: Session, edition_id: int | None, period: str | None) -> int:
    """The edition `digest send` means: the one named, else the newest ready one of the period."""
    if (edition_id is None) == (period is None):
        raise DeliveryError("give either --edition ID or --period daily|weekly")
    if edition_id is not None:
        if session.get(Edition, edition_id) is None:
            raise DeliveryError(f"no edition {edition_id} (see `digest editions`)")
        return edition_id
    newest = session.scalar(
        select(Edition.id).where(Edition.period == period, Edition.status == "ready").order_by(Edition.start_date.desc())
    )
    if newest is None:
        raise DeliveryError(f"no ready {period} edition to send (build one first)")
    return newest


def delivery_records(session: Session, edition_id: int | None = None) -> Iterator[dict]:
    """What happened to whom, oldest first, as plain values."""
    query = (
        select(Delivery, Subscriber.email)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .order_by(Delivery.id)
        .execution_options(yield_per=500)
    )
    if edition_id is not None:
        query = query.where(Delivery.edition_id == edition_id)
    for delivery, email in session.execute(query):
        yield {
            "edition_id": delivery.edition_id,
            "email": email,
            "status": delivery.status,
            "attempts": delivery.attempts,
            "message_id": delivery.message_id,
            "sent_at": delivery.sent_at.isoformat() if delivery.sent_at else None,
            "smtp_reply": delivery.smtp_reply,
            "error": delivery.error,
        }
