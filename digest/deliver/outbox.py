"""The send loop: queue an edition's outbox rows, then claim, send and mark them one reply at a time.

Exactly-once bound: rows are claimed in small batches, but each row is marked `sent` in its own commit right
after the server accepts it. If a sender is killed, the only row that can reach a reader twice is the one whose
DATA reply arrived but whose commit did not happen: at most one per killed sender. Rows it had claimed but not
sent stay `sending` until `[email] claim_lease_seconds` has passed, then any sender takes them over (they are
retried: at-least-once for that single in-flight row, rather than losing it). A live sender never starts a send
it might not finish inside its lease: past `lease - timeout` it hands the rest of its batch back and claims
again, so a slow server cannot let a second sender take over a row the first is still sending.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import Engine

from digest.config import Config
from digest.deliver.links import Links
from digest.deliver.message import EditionMail, Outgoing, Unsubscribe
from digest.deliver.transports import PermanentFailure, TemporaryFailure, Transport, get_transport
from digest.models import Edition, utcnow
from digest.render import EmailLinks, RenderedEmail
from digest.store import outbox, session_scope

# Called after each message with (messages handled so far, messages due in this run).
SendProgress = Callable[[int, int], None]


class Renderer(Protocol):
    def email(self, themes: list[str] | None, links: EmailLinks) -> RenderedEmail: ...


@dataclass
class SendReport:
    """What one `send` run did. `waiting` rows stay queued for a later run (retry time not come, hourly limit)."""

    edition_id: int
    queued: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0
    bounced: int = 0
    waiting: int = 0
    would_send: int = 0
    dry_run: bool = False
    note: str = ""

    def summary(self) -> str:
        if self.dry_run:
            return f"dry run: would send {self.would_send} message(s) for edition {self.edition_id}"
        text = (f"edition {self.edition_id}: sent {self.sent}, skipped {self.skipped}, failed {self.failed}, "
                f"retried {self.retried}, bounced {self.bounced}, waiting {self.waiting}")
        return text + (f" ({self.note})" if self.note else "")


class HourlyLimitReached(Exception):
    """`[email] rate_per_hour` messages went out in the last hour; the rest waits for a later run."""


class Composer:
    """Builds one subscriber's message: the edition personalised to their themes, with their signed links."""

    def __init__(self, config: Config, renderer: Renderer, web_url: str) -> None:
        self.config, self.renderer, self.web_url = config, renderer, web_url
        self.links = Links(config)
        self.mail = EditionMail(config)

    def message(self, message_id: str, subscriber_id: int, email: str, themes: list[str]) -> Outgoing:
        links = EmailLinks(
            web_url=self.web_url,
            preferences_url=self.links.preferences_url(subscriber_id, email),
            unsubscribe_url=self.links.unsubscribe_url(subscriber_id, email),
        )
        rendered = self.renderer.email(themes or None, links)
        unsubscribe = Unsubscribe(self.links.one_click_url(subscriber_id, email), self.config.email.unsubscribe_mailto)
        return self.mail.build(rendered, email, message_id, unsubscribe)


class RateLimiter:
    """Says how many rows a sender may claim now under `rate_per_second` and `rate_per_hour`, counting what
    every sender sent (and holds in flight) as recorded in the database."""

    def __init__(self, config: Config) -> None:
        self.per_hour = config.email.rate_per_hour
        self.lease = config.email.claim_lease_seconds
        rate = config.email.rate_per_second
        self.window = max(1.0, 1.0 / rate)
        self.per_window = max(1, math.floor(rate * self.window))

    def allowance(self, session) -> tuple[int, float]:
        """(rows that may be claimed now, seconds to wait when none may)."""
        now = utcnow()
        in_window, in_hour, oldest = outbox.rate_usage(session, now, self.window, self.lease)
        if in_hour >= self.per_hour:
            raise HourlyLimitReached
        allowed = min(self.per_window - in_window, self.per_hour - in_hour)
        if allowed > 0:
            return allowed, 0.0
        frees_at = oldest + timedelta(seconds=self.window) if oldest else now + timedelta(seconds=0.05)
        return 0, max(0.001, (frees_at - now).total_seconds())


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def send_queued(config: Config, engine: Engine, edition: Edition, composer: Composer, limit: int | None = None,
                on_progress: SendProgress | None = None) -> SendReport:
    """Queue the edition's missing outbox rows and send every due row (at most `limit`), calling
    `on_progress(done, due)` after each."""
    report = SendReport(edition.id)
    if edition.status != "ready":
        report.note = f"edition is {edition.status}: {edition.empty_reason or 'no papers'}; nothing to send"
        return report
    with session_scope(engine) as session:
        report.queued = outbox.queue_edition(session, edition, config.email.list_id)
    if too_old(config, edition):
        with session_scope(engine) as session:
            report.skipped = outbox.skip_unsent(session, edition.id, f"edition older than send_by_hours "
                                                f"({config.email.send_by_hours:g})")
        report.note = "edition too old to send"
        return report
    due = due_count(engine, edition.id, limit)
    with get_transport(config) as transport:
        sender = Sender(config, engine, edition.id, composer, transport, report)
        sender.run(limit, (lambda done: on_progress(done, due)) if on_progress else None)
    with session_scope(engine) as session:
        report.waiting = outbox.status_counts(session, edition.id).get("pending", 0)
    return report


def too_old(config: Config, edition: Edition) -> bool:
    return utcnow() - edition.built_at > timedelta(hours=config.email.send_by_hours)


def due_count(engine: Engine, edition_id: int, limit: int | None) -> int:
    with session_scope(engine) as session:
        counts = outbox.status_counts(session, edition_id)
    due = counts.get("pending", 0) + counts.get("sending", 0)
    return due if limit is None else min(due, limit)


class Sender:
    """One sender's claim-send-mark loop; on any stop its unsent claims go back to pending."""

    def __init__(self, config: Config, engine: Engine, edition_id: int, composer: Composer, transport: Transport,
                 report: SendReport) -> None:
        self.config, self.engine, self.edition_id = config, engine, edition_id
        self.composer, self.transport, self.report = composer, transport, report
        self.rate = RateLimiter(config)
        self.worker = worker_name()

    def run(self, limit: int | None, on_message: Callable[[int], None] | None = None) -> None:
        """Claim, send and mark until nothing is due (or `limit` messages were handled); `on_message(done)`
        after each message."""
        done = 0
        try:
            while limit is None or done < limit:
                claims, skipped = self.claim(limit, done)
                self.report.skipped += skipped
                if not claims and not skipped:
                    break
                deadline = time.monotonic() + self.safe_hold
                for claim in claims:
                    if time.monotonic() > deadline:
                        break
                    self.deliver(claim)
                    done += 1
                    if on_message:
                        on_message(done)
                self.release()
        except HourlyLimitReached:
            self.report.note = f"hourly limit of {self.config.email.rate_per_hour} reached; run again later"
        finally:
            self.release()

    @property
    def safe_hold(self) -> float:
        """How long after claiming a batch a new send may still start and finish within the lease."""
        lease = self.config.email.claim_lease_seconds
        return lease - min(self.config.email.timeout_seconds, lease / 2)

    def release(self) -> None:
        """Hand back this sender's claimed but unsent rows."""
        with session_scope(self.engine) as session:
            outbox.release_claims(session, self.worker)

    def claim(self, limit: int | None, done: int) -> tuple[list[outbox.Claim], int]:
        """Claim the next batch, as large as the rate limits allow now (waiting while they allow none)."""
        size = self.config.email.claim_batch if limit is None else min(self.config.email.claim_batch, limit - done)
        while True:
            with session_scope(self.engine) as session:
                outbox.lock_claims(session)
                allowed, wait = self.rate.allowance(session)
                if allowed:
                    return outbox.claim_batch(session, self.edition_id, self.worker, min(size, allowed),
                                              self.config.email.claim_lease_seconds)
            time.sleep(wait)

    def deliver(self, claim: outbox.Claim) -> None:
        """Send one claimed row and record the outcome in its own commit right after the reply."""
        message = self.composer.message(claim.message_id, claim.subscriber_id, claim.email, claim.themes)
        try:
            reply = self.transport.send(message)
        except TemporaryFailure as exc:
            self.record_temporary(claim, str(exc))
        except PermanentFailure as exc:
            self.record_permanent(claim, str(exc))
        else:
            with self.engine.begin() as connection:
                outbox.mark_sent(connection, claim.delivery_id, self.worker, reply)
            self.report.sent += 1

    def record_temporary(self, claim: outbox.Claim, error: str) -> None:
        with session_scope(self.engine) as session:
            if claim.attempts >= self.config.email.max_attempts:
                outbox.mark_failed(session, claim.delivery_id, self.worker, f"gave up: {error}", None)
                self.report.failed += 1
                return
            delay = self.config.email.retry_backoff_seconds * 2 ** (claim.attempts - 1)
            outbox.mark_retry(session, claim.delivery_id, self.worker, error, utcnow() + timedelta(seconds=delay))
            self.report.retried += 1

    def record_permanent(self, claim: outbox.Claim, error: str) -> None:
        with session_scope(self.engine) as session:
            bounced = outbox.mark_failed(session, claim.delivery_id, self.worker, error, self.config.email.bounce_after)
        self.report.failed += 1
        self.report.bounced += bounced


def preview_send(config: Config, engine: Engine, edition: Edition, composer: Composer, limit: int | None) -> SendReport:
    """Build every message the edition would send (checking templates and addresses) without writing anything."""
    report = SendReport(edition.id, dry_run=True)
    with session_scope(engine) as session:
        for subscriber in outbox.eligible_subscribers(session, edition):
            if limit is not None and report.would_send >= limit:
                break
            composer.message("<dry-run@digest>", subscriber.id, subscriber.email, subscriber.themes)
            report.would_send += 1
    return report

