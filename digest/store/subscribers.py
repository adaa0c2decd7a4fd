"""Subscribers: every query that reads or writes `subscribers` (the outbox is in `digest.store.outbox`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from digest.errors import SubscriberError
from digest.models import Delivery, Subscriber, utcnow

FREQUENCIES = ("daily", "weekly", "both")
LOOKUP_CHUNK = 1000


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


def existing_emails(session: Session, emails: list[str]) -> set[str]:
    """Those of the (normalised) addresses that already belong to a subscriber."""
    found: set[str] = set()
    for start in range(0, len(emails), LOOKUP_CHUNK):
        chunk = emails[start : start + LOOKUP_CHUNK]
        found.update(session.scalars(select(Subscriber.email).where(Subscriber.email.in_(chunk))))
    return found


def add_imported(session: Session, subscribers: Iterable[Subscriber]) -> None:
    """Add subscribers in bulk (an import has checked their addresses are new)."""
    session.add_all(subscribers)
