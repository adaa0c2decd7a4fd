"""The scheduler's tables: the lease that lets one `digest run` act per database, the list of running daemons,
and the job run log; plus the read-only questions the daemon and `digest status` ask of the other tables
(source health from the fetch log, editions with messages still to send, delivery tallies).

The lease is one row (made by the first daemon, insert-or-ignore), claimed by a conditional UPDATE, so on SQLite
and PostgreSQL alike exactly one of two daemons racing for it gets it. Times come from the caller's clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digest.models import DaemonProcess, Delivery, Edition, FetchLog, JobRun, SchedulerLease

LEASE_NAME = "scheduler"
DONE_OUTCOMES = ("ok", "partial", "empty", "skipped")
COUNT_FIELDS = ("papers_new", "papers_updated", "summaries_made", "summaries_cached", "summaries_fallback",
                "messages_sent", "messages_failed", "messages_deferred")


# --- The lease ---------------------------------------------------------------------------------------------


def lease_update():
    return update(SchedulerLease).where(SchedulerLease.name == LEASE_NAME).execution_options(synchronize_session=False)


def acquire_lease(session: Session, holder: str, host: str, pid: int, now: datetime, expires_at: datetime) -> bool:
    """Take the lease if nobody holds it or its holder let it expire. True when `holder` now has it."""
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(SchedulerLease).values(name=LEASE_NAME).on_conflict_do_nothing())
    free = or_(SchedulerLease.holder.is_(None), SchedulerLease.expires_at < now)
    result = session.execute(
        lease_update().where(free).values(holder=holder, host=host, pid=pid, acquired_at=now, renewed_at=now,
                                          expires_at=expires_at)
    )
    return result.rowcount == 1


def renew_lease(session: Session, holder: str, now: datetime, expires_at: datetime) -> bool:
    """Push the lease's expiry on; False when `holder` no longer has it (another daemon took it over)."""
    result = session.execute(
        lease_update().where(SchedulerLease.holder == holder).values(renewed_at=now, expires_at=expires_at)
    )
    return result.rowcount == 1


def release_lease(session: Session, holder: str) -> None:
    """Give the lease up at once, so a standby need not wait for it to expire."""
    session.execute(
        lease_update().where(SchedulerLease.holder == holder).values(
            holder=None, host=None, pid=None, acquired_at=None, renewed_at=None, expires_at=None)
    )


def current_lease(session: Session) -> SchedulerLease | None:
    return session.get(SchedulerLease, LEASE_NAME)


# --- Running daemons ---------------------------------------------------------------------------------------


def heartbeat(session: Session, daemon_id: str, host: str, pid: int, role: str, now: datetime) -> None:
    """Record that this daemon is alive and in which role."""
    row = session.get(DaemonProcess, daemon_id)
    if row is None:
        session.add(DaemonProcess(id=daemon_id, host=host, pid=pid, role=role, started_at=now, heartbeat_at=now))
    else:
        row.role, row.heartbeat_at = role, now


def remove_daemon(session: Session, daemon_id: str) -> None:
    session.execute(delete(DaemonProcess).where(DaemonProcess.id == daemon_id))


def live_daemons(session: Session, since: datetime) -> list[DaemonProcess]:
    """Daemons that sent a heartbeat since `since`, oldest first."""
    query = select(DaemonProcess).where(DaemonProcess.heartbeat_at >= since).order_by(DaemonProcess.started_at)
    return list(session.scalars(query))


def prune_daemons(session: Session, before: datetime) -> None:
    """Forget daemons silent since `before` (killed without a chance to remove their row)."""
    session.execute(delete(DaemonProcess).where(DaemonProcess.heartbeat_at < before))


# --- The run log -------------------------------------------------------------------------------------------


def start_run(session: Session, job: str, trigger: str, holder: str, now: datetime, due_at: datetime | None = None,
              edition_date: date | None = None, edition_id: int | None = None) -> JobRun:
    run = JobRun(job=job, trigger=trigger, holder=holder, started_at=now, due_at=due_at, edition_date=edition_date,
                 edition_id=edition_id, outcome="running")
    session.add(run)
    session.flush()
    return run


def finish_run(session: Session, run_id: int, outcome: str, now: datetime, detail: str | None = None,
               edition_id: int | None = None, counts: dict[str, int] | None = None) -> None:
    run = session.get(JobRun, run_id)
    run.outcome, run.finished_at, run.detail = outcome, now, detail
    if edition_id is not None:
        run.edition_id = edition_id
    for name, value in (counts or {}).items():
        setattr(run, name, value)


def set_run_edition(session: Session, run_id: int, edition_id: int) -> None:
    """Note the edition a run built, so a resumed run sends it instead of building again."""
    session.get(JobRun, run_id).edition_id = edition_id


def record_skip(session: Session, job: str, holder: str, now: datetime, due_at: datetime, edition_date: date | None,
                reason: str) -> JobRun:
    """A run that was decided against (stale, superseded): written finished, with the reason."""
    run = start_run(session, job, "catch-up", holder, now, due_at, edition_date)
    run.outcome, run.finished_at, run.detail = "skipped", now, reason
    return run


def interrupt_orphans(session: Session, holder: str, now: datetime) -> int:
    """Close the runs left `running` by another holder: it stopped without finishing them (killed, or lost
    the lease). Only the lease holder runs jobs, so once it has the lease they cannot still be running."""
    return session.execute(
        update(JobRun)
        .where(JobRun.outcome == "running", JobRun.holder != holder)
        .values(outcome="interrupted", finished_at=now,
                detail="the daemon running it stopped before it finished (killed, or its lease ran out)")
        .execution_options(synchronize_session=False)
    ).rowcount


def runs_for(session: Session, job: str, due_at: datetime) -> list[JobRun]:
    """Every run of `job` for the scheduled time `due_at`, oldest first."""
    return list(session.scalars(select(JobRun).where(JobRun.job == job, JobRun.due_at == due_at).order_by(JobRun.id)))


def first_run_at(session: Session) -> datetime | None:
    """When the scheduler first ran anything on this database (None: never)."""
    return session.scalar(select(func.min(JobRun.started_at)))


def last_runs(session: Session) -> dict[str, JobRun]:
    """The newest run of each job."""
    newest = select(JobRun.job, func.max(JobRun.id).label("id")).group_by(JobRun.job).subquery()
    rows = session.scalars(select(JobRun).join(newest, JobRun.id == newest.c.id))
    return {run.job: run for run in rows}


def last_finished(session: Session, job: str, outcomes: Iterable[str] = DONE_OUTCOMES) -> JobRun | None:
    query = select(JobRun).where(JobRun.job == job, JobRun.outcome.in_(list(outcomes))).order_by(JobRun.id.desc())
    return session.scalars(query.limit(1)).first()


def ingests_to_summarise(session: Session) -> list[JobRun]:
    """Ingest runs that stored new or changed papers after the start of the last finished summarise run,
    oldest first: their papers may still lack TL;DRs."""
    query = select(JobRun).where(JobRun.job == "ingest", JobRun.papers_new + JobRun.papers_updated > 0)
    done = last_finished(session, "summarise")
    if done is not None:
        query = query.where(JobRun.started_at > done.started_at)
    return list(session.scalars(query.order_by(JobRun.started_at)))


def edition_runs(session: Session, job: str, first: date, last: date) -> list[JobRun]:
    """Runs of an edition job for the edition days `first` to `last`, oldest first."""
    query = select(JobRun).where(JobRun.job == job, JobRun.edition_date >= first, JobRun.edition_date <= last)
    return list(session.scalars(query.order_by(JobRun.id)))


def recent_runs(session: Session, limit: int) -> list[JobRun]:
    return list(session.scalars(select(JobRun).order_by(JobRun.id.desc()).limit(limit)))


# --- Sources -----------------------------------------------------------------------------------------------


@dataclass
class SourceHealth:
    """How a source's recent fetches went: failures in a row counts the newest consecutive errors."""

    name: str
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failures_in_a_row: int = 0


def source_health(session: Session, names: Iterable[str], window: int = 64) -> dict[str, SourceHealth]:
    """Health of each named source from its newest `window` fetch-log rows (and its last success ever)."""
    health = {}
    for name in names:
        rows = list(session.scalars(
            select(FetchLog).where(FetchLog.source == name).order_by(FetchLog.started_at.desc(), FetchLog.id.desc())
            .limit(window)
        ))
        state = SourceHealth(name, last_attempt=rows[0].started_at if rows else None)
        for row in rows:
            if row.status != "error":
                break
            state.failures_in_a_row += 1
        errors = [row for row in rows if row.status == "error"]
        if errors:
            state.last_error, state.last_error_at = errors[0].error, errors[0].started_at
        state.last_success = session.scalar(
            select(func.max(FetchLog.started_at)).where(FetchLog.source == name, FetchLog.status != "error")
        )
        health[name] = state
    return health


# --- Editions and their deliveries -------------------------------------------------------------------------


def editions_with_unsent(session: Session, now: datetime, claim_lease_seconds: float) -> dict[int, tuple[Edition, bool]]:
    """Editions with messages not yet sent, by id, oldest first, each with whether a sender could take one now:
    a pending row whose retry time has come, or a row a stopped sender claimed longer than the claim lease ago."""
    unsent = or_(Delivery.status == "pending", Delivery.status == "sending")
    due = or_(
        and_(Delivery.status == "pending", or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now)),
        and_(Delivery.status == "sending", Delivery.claimed_at < now - timedelta(seconds=claim_lease_seconds)),
    )
    due_ids = set(session.scalars(select(Delivery.edition_id).where(due).distinct()))
    ids = select(Delivery.edition_id).where(unsent).distinct()
    query = select(Edition).where(Edition.id.in_(ids)).order_by(Edition.start_date, Edition.id)
    return {edition.id: (edition, edition.id in due_ids) for edition in session.scalars(query)}


def newest_ready_edition(session: Session, period: str) -> Edition | None:
    query = select(Edition).where(Edition.period == period, Edition.status == "ready")
    return session.scalars(query.order_by(Edition.start_date.desc()).limit(1)).first()


def editions_between(session: Session, period: str, first: date, last: date) -> dict[date, Edition]:
    query = select(Edition).where(Edition.period == period, Edition.start_date >= first, Edition.start_date <= last)
    return {edition.start_date: edition for edition in session.scalars(query)}


def latest_editions(session: Session, limit: int) -> list[Edition]:
    query = select(Edition).order_by(Edition.start_date.desc(), Edition.period.desc()).limit(limit)
    return list(session.scalars(query))


def delivery_tallies(session: Session, edition_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """{edition id: {status: messages}} for the given editions."""
    ids = list(edition_ids)
    tallies: dict[int, dict[str, int]] = {edition_id: {} for edition_id in ids}
    rows = session.execute(
        select(Delivery.edition_id, Delivery.status, func.count())
        .where(Delivery.edition_id.in_(ids))
        .group_by(Delivery.edition_id, Delivery.status)
    )
    for edition_id, status, count in rows:
        tallies[edition_id][status] = count
    return tallies


def skip_reasons(session: Session, edition_id: int) -> list[str]:
    """The distinct reasons the edition's skipped messages were not sent."""
    query = select(Delivery.error).where(Delivery.edition_id == edition_id, Delivery.status == "skipped").distinct()
    return [reason for reason in session.scalars(query) if reason]
