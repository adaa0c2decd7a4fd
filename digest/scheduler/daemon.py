"""The daemon: `Daemon.run()` holds (or waits for) the lease, heartbeats, wakes its worker on the timer, and the
worker runs what is due (see the package docstring for how it decides)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from digest import pipeline
from digest.config import Config
from digest.errors import DigestError
from digest.models import JobRun
from digest.scheduler.schedule import PERIODS, Clock, Schedule, SystemClock, backing_off
from digest.store import runs as store
from digest.store import session_scope

log = logging.getLogger("digest.scheduler")

MAX_RETRY_DELAY = timedelta(hours=1)


class Stopped(Exception):
    """Raised at a safe point when the daemon is stopping or lost its lease."""


# --- Jobs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """One job to run: which, for which cron time (None when forced), and what it works on."""

    job: str  # ingest, summarise, daily, weekly, send
    trigger: str  # schedule, catch-up, once
    due_at: datetime | None = None
    edition_date: date | None = None
    edition_id: int | None = None
    since: datetime | None = None


@dataclass
class Outcome:
    """What a job did, written to its run-log row."""

    outcome: str = "ok"
    detail: str | None = None
    edition_id: int | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, **counts: int) -> None:
        for name, value in counts.items():
            self.counts[name] = self.counts.get(name, 0) + value


def summary_counts(config: Config, report) -> dict[str, int]:
    """Run-log counts from a SummariseReport: written, reused, and fallen back to extractive (a model's answer
    failed its check twice; with the extractive backend nothing falls back)."""
    fallback = report.methods.get("extractive", 0) if config.summariser.backend != "extractive" else 0
    return {"summaries_made": report.written, "summaries_cached": report.reused, "summaries_fallback": fallback}


# --- The daemon --------------------------------------------------------------------------------------------


class Daemon:
    """One `digest run` process: its lease, its heartbeat, its timer and the worker that runs due jobs.

    `run()` is the daemon (until `stop()`); `run(once=True)` runs what is due now, or the job named by
    `forced`, and returns. `catch_up()` and `execute()` are the parts a test can drive with its own clock."""

    def __init__(self, config: Config, engine: Engine, clock: Clock | None = None) -> None:
        self.config, self.engine = config, engine
        self.settings = config.schedule
        self.clock = clock or SystemClock()
        self.schedule = Schedule(config)
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.id = f"{self.host}:{self.pid}:{secrets.token_hex(3)}"
        self.holding = False
        self.lease_until: datetime | None = None
        self.halt = threading.Event()  # the running job stops at its next safe point
        self.stopping = threading.Event()  # the process is stopping
        self.wake = threading.Event()  # the worker has something to look at
        self.attention = threading.Event()  # the main loop should look now
        self.done = threading.Event()  # a --once run has finished its work
        self.busy = threading.Lock()  # held while a job runs
        self.running: JobRun | None = None
        self.forced: str | None = None
        self.failures = 0
        self.standby_holder: str | None = None

    # --- Lifecycle (main thread) ---

    def run(self, once: bool = False, forced: str | None = None) -> str:
        """Hold (or wait for) the lease and run jobs until stopped; with `once`, until what is due now (or the
        `forced` job) has run. Returns `ok`, `failed` (a job failed), `refused` (with `once`: another daemon
        holds the lease, nothing was done) or `abandoned` (a job did not reach a safe point in time)."""
        self.forced = forced
        timer = None if once else self.timer()
        worker = threading.Thread(target=self.work, args=(once,), name="digest-jobs", daemon=True)
        worker.start()
        try:
            while True:
                self.beat(timer)
                if self.stopping.is_set() or (once and (self.done.is_set() or not self.holding)):
                    break
                self.attention.wait(self.settings.heartbeat_seconds)
                self.attention.clear()
        finally:
            refused = once and not self.done.is_set() and not self.stopping.is_set()
            finished = self.shut_down(timer)
        if not finished:
            return "abandoned"
        if refused:
            return "refused"
        return "failed" if self.failures else "ok"

    def stop(self, reason: str = "asked to stop") -> None:
        """Stop soon: the running job at its next safe point, then the daemon (safe to call from a signal handler)."""
        if not self.stopping.is_set():
            log.info("stopping (%s)", reason, extra={"event": "stopping"})
        self.stopping.set()
        self.halt.set()
        self.wake.set()
        self.attention.set()

    def timer(self) -> BackgroundScheduler:
        """APScheduler, started paused: each [schedule] cron time and every `check_minutes` it wakes the worker.
        `misfire_grace_time` is one check interval: a wake-up missed by less (a busy machine, a short suspend)
        still happens at once; a longer miss is caught by the next check, from the database."""
        grace = int(self.settings.check_minutes * 60)
        scheduler = BackgroundScheduler(timezone=self.config.timezone)
        options = {"coalesce": True, "max_instances": 1, "misfire_grace_time": grace}
        for name, trigger in self.schedule.triggers.items():
            scheduler.add_job(self.wake.set, trigger, id=name, name=f"digest {name}", **options)
        scheduler.add_job(self.wake.set, IntervalTrigger(minutes=self.settings.check_minutes), id="check",
                          name="digest check", **options)
        scheduler.start(paused=True)
        return scheduler

    def beat(self, timer: BackgroundScheduler | None) -> None:
        """One heartbeat: renew the lease (or try to take it), and say this daemon is alive."""
        now = self.clock.now()
        try:
            with session_scope(self.engine) as session:
                if self.holding:
                    if not store.renew_lease(session, self.id, now, self.expiry(now)):
                        self.lose(timer, "another daemon took the scheduler lease over")
                    else:
                        self.lease_until = self.expiry(now)
                    store.prune_daemons(session, now - timedelta(seconds=10 * self.settings.lease_seconds))
                elif store.acquire_lease(session, self.id, self.host, self.pid, now, self.expiry(now)):
                    self.lease_until = self.expiry(now)
                    orphans = store.interrupt_orphans(session, self.id, now)
                    self.gain(timer, orphans)
                else:
                    self.note_standby(store.current_lease(session))
                store.heartbeat(session, self.id, self.host, self.pid, "active" if self.holding else "standby", now)
        except SQLAlchemyError as exc:
            log.warning("database unavailable for the heartbeat, retrying in %gs: %s", self.settings.heartbeat_seconds,
                        getattr(exc, "orig", None) or exc)
            if self.holding and self.lease_until is not None and now >= self.lease_until:
                self.lose(timer, "could not renew the scheduler lease before it expired")

    def expiry(self, now: datetime) -> datetime:
        """The lease lasts `lease_seconds` less one heartbeat: a standby checks once a heartbeat, so it takes
        over at most `lease_seconds` after the holder's last renewal."""
        return now + timedelta(seconds=self.settings.lease_seconds - self.settings.heartbeat_seconds)

    def gain(self, timer: BackgroundScheduler | None, orphans: int) -> None:
        self.holding = True
        self.halt.clear()
        log.info("active: holding the scheduler lease as %s", self.id, extra={"event": "active"})
        if orphans:
            log.warning("%d job run(s) left unfinished by a daemon that stopped are marked interrupted", orphans)
        if timer is not None:
            timer.resume()
        self.wake.set()

    def lose(self, timer: BackgroundScheduler | None, reason: str) -> None:
        self.holding = False
        self.halt.set()
        if timer is not None:
            timer.pause()
        log.error("standby: %s; the running job stops at its next safe point", reason, extra={"event": "standby"})

    def note_standby(self, lease) -> None:
        holder = lease.holder if lease is not None else None
        if holder != self.standby_holder:
            self.standby_holder = holder
            log.info("standby: the scheduler lease is held by %s (pid %s on %s) until %s; taking over if it "
                     "stops renewing", holder, lease.pid, lease.host, lease.expires_at.isoformat(timespec="seconds"),
                     extra={"event": "standby"})

    def shut_down(self, timer: BackgroundScheduler | None) -> bool:
        """Stop the timer, give the running job `stop_timeout_seconds` to reach a safe point, release the lease.
        False when the job had to be left unfinished."""
        self.stopping.set()
        self.halt.set()
        self.wake.set()
        if timer is not None:
            timer.shutdown(wait=False)
        finished = self.busy.acquire(timeout=self.settings.stop_timeout_seconds)
        if finished:
            self.busy.release()
        else:
            self.abandon_running_job()
        try:
            with session_scope(self.engine) as session:
                if self.holding:
                    store.release_lease(session, self.id)
                store.remove_daemon(session, self.id)
        except SQLAlchemyError as exc:
            log.warning("could not release the scheduler lease (it expires by itself): %s", exc)
        self.holding = False
        log.info("stopped", extra={"event": "stopped"})
        return finished

    def abandon_running_job(self) -> None:
        run = self.running
        log.warning("the running job did not reach a safe point within %gs (stop_timeout_seconds); leaving it: "
                    "work since its last safe point is redone on the next start", self.settings.stop_timeout_seconds)
        if run is None:
            return
        try:
            with session_scope(self.engine) as session:
                store.finish_run(session, run.id, "interrupted", self.clock.now(),
                                 "stopped before reaching a safe point (stop_timeout_seconds)")
        except SQLAlchemyError:
            pass

    # --- The worker thread ---

    def work(self, once: bool) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.stopping.is_set():
                return
            if not self.holding:
                continue
            with self.busy:
                try:
                    if self.forced:
                        self.execute(self.forced_job(self.forced))
                    else:
                        self.catch_up()
                except Exception:  # a bug must not leave a daemon that heartbeats but never works
                    log.exception("checking what is due failed; trying again at the next wake-up")
            if once:
                self.done.set()
                self.attention.set()
                return

    def safe_point(self, *_progress) -> None:
        """Called by the pipeline after each unit of committed work: raise Stopped when asked to stop."""
        if self.halt.is_set():
            raise Stopped

    def catch_up(self) -> None:
        """Run everything due and not done, in pipeline order, until done or told to stop."""
        steps: list[Callable[[datetime], list[Due]]] = [
            self.due_ingest, self.due_summarise, lambda now: self.due_edition("daily", now),
            lambda now: self.due_edition("weekly", now), self.due_sends,
        ]
        for step in steps:
            try:
                due = step(self.clock.now())
            except SQLAlchemyError as exc:
                log.warning("database unavailable while checking what is due; retrying at the next check: %s", exc)
                return
            for job in due:
                if self.halt.is_set():
                    return
                self.execute(job)

    def trigger_for(self, due_at: datetime, now: datetime) -> str:
        return "schedule" if now - due_at <= timedelta(minutes=self.settings.check_minutes) else "catch-up"

    def due_ingest(self, now: datetime) -> list[Due]:
        times = self.schedule.latest("ingest", now)
        if not times:
            return []
        with session_scope(self.engine) as session:
            runs = store.runs_for(session, "ingest", times[-1])
        if any(run.outcome != "interrupted" for run in runs):
            return []
        return [Due("ingest", self.trigger_for(times[-1], now), times[-1])]

    def due_summarise(self, now: datetime) -> list[Due]:
        """A summarise run after ingests that stored papers, for the papers first seen since the oldest of them."""
        with session_scope(self.engine) as session:
            pending = store.ingests_to_summarise(session)
            if not pending:
                return []
            since = pending[0].started_at
            if not self.retry_due(store.runs_for(session, "summarise", since), now):
                return []
        return [Due("summarise", "schedule", since, since=since)]

    def retry_due(self, runs: list[JobRun], now: datetime) -> bool:
        """Whether a job with these earlier runs for one cron time should run now: not if one finished; after
        failures, once a delay has passed (one check interval, doubling per failure, at most an hour)."""
        if any(run.outcome in store.DONE_OUTCOMES for run in runs):
            return False
        failed = [run for run in runs if run.outcome == "failed"]
        if not failed:
            return True
        delay = min(MAX_RETRY_DELAY, timedelta(minutes=self.settings.check_minutes) * 2 ** (len(failed) - 1))
        return now >= (failed[-1].finished_at or failed[-1].started_at) + delay

    def due_edition(self, period: str, now: datetime) -> list[Due]:
        """The latest cron time's edition, if it is not done, not failing too recently and not stale; earlier
        cron times missed since the daemon first ran are recorded as skipped (only the latest is sent)."""
        times = self.schedule.latest(period, now)
        if not times:
            return []
        latest, send_by = times[-1], timedelta(hours=self.config.email.send_by_hours)
        with session_scope(self.engine) as session:
            first_run = store.first_run_at(session)
            for missed in times[:-1]:
                runs = store.runs_for(session, period, missed)
                if first_run is not None and missed > first_run and not any(
                        run.outcome in store.DONE_OUTCOMES for run in runs):
                    self.skip(session, period, missed, now, self.superseded_reason(latest, runs))
            runs = store.runs_for(session, period, latest)
            if not self.retry_due(runs, now):
                return []
            if now - latest > send_by:
                reason = (f"stale: due at {self.schedule.label(latest)}, more than send_by_hours "
                          f"({self.config.email.send_by_hours:g}) ago")
                self.skip(session, period, latest, now, reason)
                return []
        built = next((run.edition_id for run in reversed(runs) if run.edition_id is not None), None)
        return [Due(period, self.trigger_for(latest, now), latest, self.schedule.local_day(latest), built)]

    def superseded_reason(self, latest: datetime, runs: list[JobRun]) -> str:
        if runs and runs[-1].outcome == "failed":
            why = f"it failed ({runs[-1].detail})"
        elif runs:
            why = "it was interrupted"
        else:
            why = "the daemon was not running at its time"
        return f"superseded: {why}; after an outage only the latest edition ({self.schedule.label(latest)}) is sent"

    def skip(self, session, job: str, due_at: datetime, now: datetime, reason: str) -> None:
        day = self.schedule.local_day(due_at)
        store.record_skip(session, job, self.id, now, due_at, day, reason)
        log.warning("%s %s skipped: %s", job, day, reason, extra={"job": job, "outcome": "skipped"})

    def due_sends(self, now: datetime) -> list[Due]:
        """Editions with messages still to send: the newest of each period is sent when one is due (its retry
        time came, or a stopped sender's claim ran out); an older one's unsent messages are skipped."""
        with session_scope(self.engine) as session:
            unsent = store.editions_with_unsent(session, now, self.config.email.claim_lease_seconds)
            newest = {period: store.newest_ready_edition(session, period) for period in PERIODS}
        due = []
        for edition, ready_now in unsent.values():
            latest = newest[edition.period]
            if latest is not None and latest.id != edition.id:
                reason = f"superseded by the {latest.period} edition of {latest.start_date}"
                skipped = pipeline.skip_unsent(self.engine, edition.id, reason)
                log.warning("%s edition %s: %d unsent message(s) skipped (%s)", edition.period, edition.start_date,
                            skipped, reason, extra={"job": "send", "outcome": "skipped"})
            elif ready_now:
                due.append(Due("send", "catch-up", edition_date=edition.start_date, edition_id=edition.id))
        return due

    def forced_job(self, job: str) -> Due:
        """`digest run --once JOB`: the job now, whatever the schedule says."""
        today = self.schedule.local_day(self.clock.now())
        return Due(job, "once", edition_date=today if job in PERIODS else None)

    # --- Running one job ---

    def execute(self, due: Due) -> Outcome:
        """Run one job and record it: a row when it starts, its outcome when it ends. Errors are recorded,
        never raised: the daemon carries on."""
        started = time.monotonic()
        try:
            with session_scope(self.engine) as session:
                self.running = store.start_run(session, due.job, due.trigger, self.id, self.clock.now(), due.due_at,
                                               due.edition_date, due.edition_id)
        except SQLAlchemyError as exc:
            log.warning("database unavailable, %s not started; retrying at the next check: %s", due.job, exc)
            return Outcome("failed", str(exc))
        what = f"{due.job} {due.edition_date}" if due.edition_date else due.job
        log.info("%s: started (%s%s)", what, due.trigger, f", due {self.schedule.label(due.due_at)}" if due.due_at else "",
                 extra={"job": due.job, "event": "started"})
        result = Outcome()
        try:
            JOBS[due.job](self, due, result)
        except Stopped:
            result.outcome, result.detail = "interrupted", "stopped at a safe point; the next run resumes"
        except DigestError as exc:
            result.outcome, result.detail = "failed", str(exc)
        except SQLAlchemyError as exc:
            result.outcome, result.detail = "failed", f"database error: {getattr(exc, 'orig', None) or exc}"
        except Exception as exc:  # a bug must not stop the daemon: record it with its traceback in the log
            log.exception("%s crashed", what)
            result.outcome, result.detail = "failed", f"{type(exc).__name__}: {exc}"
        self.record(self.running, result, what, time.monotonic() - started)
        self.running = None
        return result

    def record(self, run: JobRun, result: Outcome, what: str, seconds: float) -> None:
        if result.outcome == "failed":
            self.failures += 1
        level = logging.ERROR if result.outcome == "failed" else logging.INFO
        counts = ", ".join(f"{name} {value}" for name, value in result.counts.items() if value)
        log.log(level, "%s: %s in %.1fs%s%s", what, result.outcome, seconds, f" ({counts})" if counts else "",
                f": {result.detail}" if result.detail else "",
                extra={"job": run.job, "event": "finished", "outcome": result.outcome, "counts": result.counts})
        try:
            with session_scope(self.engine) as session:
                store.finish_run(session, run.id, result.outcome, self.clock.now(), result.detail, result.edition_id,
                                 result.counts)
        except SQLAlchemyError as exc:
            log.warning("could not record the end of %s (the next daemon marks it interrupted): %s", what, exc)

    def ingest(self, due: Due, result: Outcome) -> None:
        """Fetch the enabled sources, leaving out those backing off after repeated failures (unless forced)."""
        now = self.clock.now()
        sources = [source.name for source in self.config.sources if source.enabled]
        with session_scope(self.engine) as session:
            health = store.source_health(session, sources)
        resting = {name: until for name in sources if (until := backing_off(self.config, health[name], now))}
        if due.trigger != "once":
            sources = [name for name in sources if name not in resting]
        notes = [f"{name} backing off until {until.isoformat(timespec='minutes')}" for name, until in resting.items()
                 if name not in sources]
        if not sources:
            result.outcome, result.detail = "skipped", "; ".join(notes) or "no enabled sources"
            return
        report = pipeline.ingest(self.config, self.engine, sources, on_progress=self.safe_point)
        result.add(papers_new=report.new, papers_updated=sum(r.updated for r in report.results))
        failures = [str(failure) for failure in report.failures]
        if failures:
            result.outcome = "failed" if len(failures) == len(report.results) else "partial"
        result.detail = "; ".join(failures + notes) or None

    def summarise(self, due: Due, result: Outcome) -> None:
        """Themes and TL;DRs for the papers first seen since the ingests that stored them."""
        report = pipeline.summarise(self.config, self.engine, since=due.since, on_progress=self.safe_point)
        result.add(**summary_counts(self.config, report))

    def edition(self, due: Due, result: Outcome) -> None:
        """Build the period's edition (unless an earlier run for this time built it) and send it."""
        edition_id = due.edition_id
        if edition_id is None:
            edition = pipeline.build_edition(self.config, self.engine, due.job, due.edition_date)
            edition_id = result.edition_id = edition.id
            with session_scope(self.engine) as session:
                store.set_run_edition(session, self.running.id, edition_id)
            if edition.status != "ready":
                result.outcome, result.detail = "empty", edition.empty_reason
                return
        self.safe_point()
        self.send(due, result, edition_id)

    def send(self, due: Due, result: Outcome, edition_id: int | None = None) -> None:
        edition_id = edition_id or due.edition_id
        result.edition_id = edition_id
        report = pipeline.send_edition(self.config, self.engine, edition_id, on_progress=self.safe_point)
        result.add(messages_sent=report.sent, messages_failed=report.failed, messages_deferred=report.waiting)
        result.detail = report.summary()
        if report.note and not report.sent and report.skipped:
            result.outcome = "skipped"


JOBS: dict[str, Callable[[Daemon, Due, Outcome], None]] = {
    "ingest": Daemon.ingest,
    "summarise": Daemon.summarise,
    "daily": Daemon.edition,
    "weekly": Daemon.edition,
    "send": Daemon.send,
}
