"""Subscribers and the delivery outbox: every query that reads or writes `subscribers` and `deliveries`.

Exactly-once rests on three statements here: `queue_edition` writes one outbox row per subscriber and edition
(unique) before anything is sent; `claim_batch` hands rows to one sender only (BEGIN IMMEDIATE on SQLite,
`FOR UPDATE SKIP LOCKED` on PostgreSQL); `mark_sent` records the server's reply in its own commit.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Connection, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digest.errors import DigestError
from digest.models import Delivery, Edition, Subscriber, utcnow

STATUSES = ("pending", "confirmed", "unsubscribed", "bounced")
FREQUENCIES = ("daily", "weekly", "both")
CSV_FIELDS = ("email", "status", "themes", "frequency", "timezone", "origin", "created_at")
QUEUE_CHUNK = 1000
CLAIM_LOCK_KEY = 0x64696765  # "dige": the advisory lock that serialises claims on PostgreSQL


class SubscriberError(DigestError):
    """A subscriber cannot be added, found or changed as asked."""


# --- Subscribers ------------------------------------------------------------------------------------------


def normalise_email(address: str) -> str:
    """The address in its normal form (Unicode NFC, all lower-case: real mailboxes ignore case, and one
    reader must not become two subscribers); SubscriberError if it is not an address."""
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise SubscriberError(f"{address!r} is not a valid email address: {exc}") from None


def check_choices(themes: Iterable[str], frequency: str, known_themes: Iterable[str]) -> list[str]:
    """The themes as a sorted list (empty = all); SubscriberError naming an unknown theme or frequency."""
    known = set(known_themes)
    chosen = sorted({theme.strip() for theme in themes if theme.strip()})
    unknown = [theme for theme in chosen if theme not in known]
    if unknown:
        raise SubscriberError(f"unknown theme(s): {', '.join(unknown)} (known: {', '.join(sorted(known)) or 'none'})")
    if frequency not in FREQUENCIES:
        raise SubscriberError(f"unknown frequency {frequency!r} (use {', '.join(FREQUENCIES)})")
    return chosen


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.email == normalise_email(email)))


def subscriber_for_token(session: Session, subscriber_id: int, email: str) -> Subscriber | None:
    """The subscriber a signed link names, only while it still has the address the link was made for."""
    subscriber = session.get(Subscriber, subscriber_id)
    return subscriber if subscriber is not None and subscriber.email == email else None


def add_subscriber(
    session: Session,
    email: str,
    themes: list[str],
    frequency: str,
    status: str = "pending",
    origin: str = "cli",
) -> Subscriber:
    """A new subscriber; SubscriberError if the address is already there."""
    address = normalise_email(email)
    if session.scalar(select(Subscriber.id).where(Subscriber.email == address)) is not None:
        raise SubscriberError(f"{address} is already a subscriber")
    subscriber = Subscriber(email=address, themes=themes, frequency=frequency, status=status, origin=origin)
    if status == "confirmed":
        subscriber.confirmed_at = utcnow()
    session.add(subscriber)
    session.flush()
    return subscriber


def request_subscription(session: Session, email: str, themes: list[str], frequency: str) -> Subscriber | None:
    """Record a web sign-up. Returns the subscriber that needs a confirmation email (new, still pending, or
    coming back after unsubscribing), or None when nothing must be sent (already confirmed, or bounced)."""
    subscriber = find_subscriber(session, email)
    if subscriber is None:
        return add_subscriber(session, email, themes, frequency, origin="web")
    if subscriber.status in ("confirmed", "bounced"):
        return None
    subscriber.themes, subscriber.frequency, subscriber.status = themes, frequency, "pending"
    return subscriber


def confirm_subscriber(subscriber: Subscriber) -> None:
    """Confirm a pending subscriber; an old link never brings back someone who left or bounced."""
    if subscriber.status == "pending":
        subscriber.status, subscriber.confirmed_at, subscriber.unsubscribed_at = "confirmed", utcnow(), None


def set_preferences(subscriber: Subscriber, themes: list[str], frequency: str) -> None:
    subscriber.themes, subscriber.frequency = themes, frequency


def unsubscribe(subscriber: Subscriber) -> None:
    """Stop all mail to this subscriber; repeating it changes nothing."""
    if subscriber.status != "unsubscribed":
        subscriber.status, subscriber.unsubscribed_at = "unsubscribed", utcnow()


def remove_subscriber(session: Session, email: str) -> None:
    """Delete the subscriber and their delivery history."""
    subscriber = find_subscriber(session, email)
    if subscriber is None:
        raise SubscriberError(f"no subscriber {normalise_email(email)}")
    session.execute(delete(Delivery).where(Delivery.subscriber_id == subscriber.id))
    session.delete(subscriber)


def iter_subscribers(session: Session) -> Iterator[Subscriber]:
    """Every subscriber by id, streamed."""
    yield from session.scalars(select(Subscriber).order_by(Subscriber.id).execution_options(yield_per=500))


def subscriber_record(subscriber: Subscriber) -> dict:
    """The subscriber as plain JSON-ready values (for `--json` and CSV export)."""
    return {
        "email": subscriber.email,
        "status": subscriber.status,
        "themes": subscriber.themes,
        "frequency": subscriber.frequency,
        "timezone": subscriber.timezone,
        "origin": subscriber.origin,
        "created_at": subscriber.created_at.isoformat(),
        "confirmed_at": subscriber.confirmed_at.isoformat() if subscriber.confirmed_at else None,
        "failures": subscriber.failures,
    }


# --- CSV import and export --------------------------------------------------------------------------------


def export_csv(session: Session, out: io.TextIOBase) -> int:
    """Write every subscriber as CSV (themes joined by `;`); return how many."""
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    count = 0
    for subscriber in iter_subscribers(session):
        writer.writerow({**subscriber_record(subscriber), "themes": ";".join(subscriber.themes)})
        count += 1
    return count


@dataclass(frozen=True)
class CsvRow:
    line: int
    email: str
    status: str
    themes: list[str]
    frequency: str


def parse_csv(text: str, known_themes: Iterable[str]) -> list[CsvRow]:
    """Validate every row of a subscriber CSV (column `email` required; `status`, `themes` split on `;`,
    `frequency` optional). SubscriberError listing every bad row with its line number if any is bad."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "email" not in [name.strip() for name in reader.fieldnames]:
        raise SubscriberError("the CSV needs a header row with an `email` column")
    rows, problems, seen = [], [], {}
    for record in reader:
        line = reader.line_num
        try:
            row = parse_csv_row(line, {key.strip(): (value or "") for key, value in record.items() if key}, known_themes)
        except SubscriberError as exc:
            problems.append(f"line {line}: {exc}")
            continue
        if row.email in seen:
            problems.append(f"line {line}: {row.email} repeats line {seen[row.email]}")
        seen.setdefault(row.email, line)
        rows.append(row)
    if problems:
        raise SubscriberError(f"{len(problems)} bad row(s), nothing imported:\n" + "\n".join(problems))
    return rows


def parse_csv_row(line: int, record: dict[str, str], known_themes: Iterable[str]) -> CsvRow:
    status = record.get("status", "").strip() or "confirmed"
    if status not in ("pending", "confirmed"):
        raise SubscriberError(f"status {status!r} cannot be imported (use pending or confirmed)")
    frequency = record.get("frequency", "").strip() or "daily"
    themes = check_choices(record.get("themes", "").split(";"), frequency, known_themes)
    return CsvRow(line, normalise_email(record.get("email", "")), status, themes, frequency)


def import_rows(session: Session, rows: list[CsvRow]) -> int:
    """Add the parsed rows; SubscriberError listing every address already present (and nothing added)."""
    emails = [row.email for row in rows]
    existing = set()
    for start in range(0, len(emails), QUEUE_CHUNK):
        chunk = emails[start : start + QUEUE_CHUNK]
        existing.update(session.scalars(select(Subscriber.email).where(Subscriber.email.in_(chunk))))
    if existing:
        problems = [f"line {row.line}: {row.email} is already a subscriber" for row in rows if row.email in existing]
        raise SubscriberError(f"{len(problems)} bad row(s), nothing imported:\n" + "\n".join(problems))
    now = utcnow()
    session.add_all(
        Subscriber(
            email=row.email,
            status=row.status,
            themes=row.themes,
            frequency=row.frequency,
            origin="import",
            confirmed_at=now if row.status == "confirmed" else None,
        )
        for row in rows
    )
    return len(rows)


# --- Outbox -------------------------------------------------------------------------------------------------


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
        select(Delivery.id, Delivery.message_id, Delivery.attempts, Subscriber.id, Subscriber.email,
               Subscriber.themes, Subscriber.status)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.edition_id == edition_id, due)
        .order_by(Delivery.id)
        .limit(size)
    )
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Delivery)
    rows = session.execute(query).all()
    gone = {row[0]: row[6] for row in rows if row[6] != "confirmed"}
    for delivery_id, status in gone.items():
        finish(session, delivery_id, None, "skipped", error=f"subscriber {status}")
    claims = [Claim(row[0], row[1], row[3], row[4], row[5], row[2] + 1) for row in rows if row[0] not in gone]
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
        raise SubscriberError("give either --edition ID or --period daily|weekly")
    if edition_id is not None:
        if session.get(Edition, edition_id) is None:
            raise SubscriberError(f"no edition {edition_id} (see `digest editions list`)")
        return edition_id
    newest = session.scalar(
        select(Edition.id).where(Edition.period == period, Edition.status == "ready").order_by(Edition.start_date.desc())
    )
    if newest is None:
        raise SubscriberError(f"no ready {period} edition to send (build one first)")
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
