"""The send loop: queue an edition's outbox rows, then claim, send and mark them one reply at a time.

Exactly-once bound: rows are claimed in small batches, but each row is marked `sent` in its own commit right
after the server accepts it. If a sender is killed, the only row that can reach a reader twice is the one whose
DATA reply arrived but whose commit did not happen: at most one per killed sender. Rows it had claimed but not
sent stay `sending` until `[email] claim_lease_seconds` has passed, then any sender takes them over (they are
retried: at-least-once for that single in-flight row, rather than losing it). A live sender never starts a send
it might not finish inside its lease: past `lease - timeout` it hands the rest of its batch back and claims
again, so a slow server cannot let a second sender take over a row the first is still sending.

Several senders share one outbox: N runs of `digest send` (on one machine or several), or `--workers N`, which
starts N sender processes and watches them. A worker that dies has its claimed rows handed back at once (it
can no longer be sending them), so the others take them over without waiting for the lease; the bound above
holds per worker.
"""

from __future__ import annotations

import math
import multiprocessing
import secrets
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import Engine

from digest.config import Config
from digest.errors import DeliveryError, DigestError
from digest.deliver.links import Links
from digest.deliver.message import EditionMail, Outgoing, Unsubscribe
from digest.deliver.transports import PermanentFailure, TemporaryFailure, Transport, get_transport
from digest.models import Edition, utcnow
from digest.render import EmailLinks, RenderedEmail
from digest.store import get_engine, outbox, session_scope, worker_name

# Called after each message with (messages handled so far, messages due in this run).
SendProgress = Callable[[int, int], None]
# How often `--workers` looks at its worker processes and the outbox (for progress), in seconds.
WATCH_INTERVAL = 0.25


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

    def add(self, other: SendReport) -> None:
        """Count another sender's work (of the same run) in this report."""
        for name in ("sent", "skipped", "failed", "retried", "bounced"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.add_note(other.note)

    def add_note(self, note: str) -> None:
        if note and note not in self.note:
            self.note = f"{self.note}; {note}" if self.note else note

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


# Builds a sender's Composer for an edition: `make_composer(config, engine, edition_id)`. A module-level function,
# so that worker processes can be handed it.
ComposerFactory = Callable[[Config, Engine, int], Composer]


def send_queued(config: Config, engine: Engine, edition: Edition, make_composer: ComposerFactory,
                limit: int | None = None, on_progress: SendProgress | None = None, workers: int = 1) -> SendReport:
    """Queue the edition's missing outbox rows and send every due row (at most `limit`), in this process or in
    `workers` sender processes, calling `on_progress(done, due)` as messages go out."""
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
    if workers > 1:
        Workers(config, engine, edition.id, make_composer, report).run(workers, limit, due, on_progress)
    else:
        send_here(config, engine, edition.id, make_composer(config, engine, edition.id), report, limit,
                  (lambda done: on_progress(done, due)) if on_progress else None)
    with session_scope(engine) as session:
        report.waiting = outbox.status_counts(session, edition.id).get("pending", 0)
    return report


def send_here(config: Config, engine: Engine, edition_id: int, composer: Composer, report: SendReport,
              limit: int | None, on_message: Callable[[int], None] | None = None, token: str | None = None) -> None:
    """One sender, in this process, over one connection to the mail server."""
    with get_transport(config) as transport:
        Sender(config, engine, edition_id, composer, transport, report, token).run(limit, on_message)


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
                 report: SendReport, token: str | None = None) -> None:
        self.config, self.engine, self.edition_id = config, engine, edition_id
        self.composer, self.transport, self.report = composer, transport, report
        self.rate = RateLimiter(config)
        self.worker = worker_name(token)

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


# --- Several sender processes --------------------------------------------------------------------------------


def sender_process(config: Config, edition_id: int, make_composer: ComposerFactory, token: str, limit: int | None,
                   results: Connection) -> None:
    """A worker process's whole life: its own engine, composer and mail connection; sends its report back (with
    the error that stopped it, if any)."""
    engine = get_engine(config.database_url)
    report, error = SendReport(edition_id), None
    try:
        send_here(config, engine, edition_id, make_composer(config, engine, edition_id), report, limit, token=token)
    except DigestError as exc:
        error = str(exc)
    results.send((report, error))
    results.close()


class Workers:
    """`--workers N`: N sender processes sharing the edition's outbox, watched from this process. A worker that
    dies has its claims handed back at once; if any died, this process sends whatever is still due at the end."""

    def __init__(self, config: Config, engine: Engine, edition_id: int, make_composer: ComposerFactory,
                 report: SendReport) -> None:
        self.config, self.engine, self.edition_id = config, engine, edition_id
        self.make_composer, self.report = make_composer, report
        self.errors: list[str] = []
        self.deaths = 0

    def run(self, workers: int, limit: int | None, due: int, on_progress: SendProgress | None) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited connections or threads
        started = self.handled()
        running = {}
        for share in shares(limit, workers):
            token = secrets.token_hex(4)
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=sender_process, name=f"digest-sender-{token}", daemon=True,
                                      args=(self.config, self.edition_id, self.make_composer, token, share, send))
            process.start()
            send.close()
            running[process] = (token, receive)
        while running:
            wait([process.sentinel for process in running], timeout=WATCH_INTERVAL)
            for process in [process for process in running if not process.is_alive()]:
                self.finished(process, *running.pop(process))
            if on_progress:
                on_progress(self.handled() - started, due)
        if self.deaths and not self.errors:
            left = None if limit is None else max(0, limit - (self.handled() - started))
            if left != 0:
                send_here(self.config, self.engine, self.edition_id,
                          self.make_composer(self.config, self.engine, self.edition_id), self.report, left)
        if self.errors:
            raise DeliveryError("; ".join(sorted(set(self.errors))))

    def finished(self, process, token: str, results: Connection) -> None:
        """Take a worker's report; if it died without one, hand its claims back now."""
        process.join()
        outcome = received(results)
        if outcome is not None:
            report, error = outcome
            self.report.add(report)
            if error:
                self.errors.append(error)
            return
        with session_scope(self.engine) as session:
            outbox.release_claims(session, worker_name(token, process.pid))
        self.deaths += 1
        self.report.add_note(f"worker {process.pid} died (exit code {process.exitcode}); its claimed rows were "
                             "handed back")

    def handled(self) -> int:
        """Rows of the edition that reached an end (sent, failed or skipped), counted in the database."""
        with session_scope(self.engine) as session:
            counts = outbox.status_counts(session, self.edition_id)
        return sum(counts.get(status, 0) for status in ("sent", "failed", "skipped"))


def received(results: Connection) -> tuple[SendReport, str | None] | None:
    """What a finished worker sent back, or None if it died before sending anything."""
    try:
        return results.recv() if results.poll() else None
    except EOFError:
        return None


def shares(limit: int | None, workers: int) -> list[int | None]:
    """Each worker's part of `limit` (None: no limit); workers whose part would be 0 are not started."""
    if limit is None:
        return [None] * workers
    return [part for index in range(workers) if (part := limit // workers + (index < limit % workers))]


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

