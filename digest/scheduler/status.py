"""`digest status`: what the scheduler is doing and did, read from the database as plain values.

Whether a daemon is active and which wait as standbys; each job's schedule, next time and last run; each
source's health and backoff; the latest editions with their delivery tallies; and for each of the last seven
days, whether a daily edition went out and, if not, why.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from sqlalchemy import Engine

from digest.config import Config
from digest.models import Edition, JobRun, utcnow
from digest.scheduler.schedule import Schedule, backing_off
from digest.store import runs as store
from digest.store import session_scope

DAYS = 7
LATEST_EDITIONS = 6
JOB_ORDER = ("ingest", "summarise", "daily", "weekly", "send")
# How an empty edition's reason (written by the editions stage) begins, and what kind of day it makes.
EMPTY_KINDS = (("source failures", "sources-failing"), ("no matches", "no-theme-match"), ("nothing new", "no-new-papers"))


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def status_report(config: Config, engine: Engine, now: datetime | None = None) -> dict:
    """Everything `digest status` shows, as JSON-ready values; times are ISO 8601 in UTC."""
    now = now or utcnow()
    schedule = Schedule(config)
    with session_scope(engine) as session:
        return {
            "now": iso(now),
            "timezone": config.digest.timezone,
            "daemon": daemon_state(config, session, now),
            "jobs": job_states(config, session, schedule, now),
            "sources": source_states(config, session, now),
            "editions": edition_states(session),
            "days": day_stories(config, session, schedule, now),
        }


def daemon_state(config: Config, session, now: datetime) -> dict:
    lease = store.current_lease(session)
    active = None
    if lease is not None and lease.holder and lease.expires_at and lease.expires_at > now:
        active = {"holder": lease.holder, "host": lease.host, "pid": lease.pid, "since": iso(lease.acquired_at),
                  "renewed_at": iso(lease.renewed_at), "expires_at": iso(lease.expires_at)}
    lapsed = None
    if lease is not None and lease.holder and active is None:
        lapsed = {"holder": lease.holder, "host": lease.host, "pid": lease.pid, "expired_at": iso(lease.expires_at)}
    recent = now - timedelta(seconds=config.schedule.lease_seconds)
    standby = [{"id": row.id, "host": row.host, "pid": row.pid, "since": iso(row.started_at),
                "heartbeat_at": iso(row.heartbeat_at)}
               for row in store.live_daemons(session, recent) if row.role == "standby"]
    return {"active": active, "lapsed": lapsed, "standby": standby}


def run_record(run: JobRun | None) -> dict | None:
    if run is None:
        return None
    counts = {name: getattr(run, name) for name in store.COUNT_FIELDS if getattr(run, name)}
    return {"id": run.id, "job": run.job, "trigger": run.trigger, "due_at": iso(run.due_at),
            "edition_date": run.edition_date.isoformat() if run.edition_date else None,
            "edition_id": run.edition_id, "started_at": iso(run.started_at), "finished_at": iso(run.finished_at),
            "outcome": run.outcome, "detail": run.detail, "counts": counts}


def job_states(config: Config, session, schedule: Schedule, now: datetime) -> list[dict]:
    last = store.last_runs(session)
    when = {name: getattr(config.schedule, name) for name in schedule.triggers}
    when |= {"summarise": "after an ingest that stores papers", "send": "after each build; retries when due"}
    return [{"job": job, "schedule": when[job],
             "next_run": iso(schedule.next_time(job, now)) if job in schedule.triggers else None,
             "last_run": run_record(last.get(job))}
            for job in JOB_ORDER]


def source_states(config: Config, session, now: datetime) -> list[dict]:
    health = store.source_health(session, [source.name for source in config.sources])
    states = []
    for source in config.sources:
        state = health[source.name]
        states.append({
            "name": source.name, "enabled": source.enabled, "last_attempt": iso(state.last_attempt),
            "last_success": iso(state.last_success), "last_error": state.last_error,
            "last_error_at": iso(state.last_error_at), "failures_in_a_row": state.failures_in_a_row,
            "backing_off_until": iso(backing_off(config, state, now)),
        })
    return states


def edition_states(session) -> list[dict]:
    editions = store.latest_editions(session, LATEST_EDITIONS)
    tallies = store.delivery_tallies(session, [edition.id for edition in editions])
    return [{"id": e.id, "period": e.period, "start_date": e.start_date.isoformat(),
             "end_date": e.end_date.isoformat(), "status": e.status, "papers": e.content.get("paper_count", 0),
             "empty_reason": e.empty_reason, "built_at": iso(e.built_at), "deliveries": tallies[e.id]}
            for e in editions]


# --- The last seven days -----------------------------------------------------------------------------------


def day_stories(config: Config, session, schedule: Schedule, now: datetime) -> list[dict]:
    """For each of the last seven local days, newest first, whether a daily edition went out and why not."""
    today = schedule.local_day(now)
    first = today - timedelta(days=DAYS - 1)
    editions = store.editions_between(session, "daily", first, today)
    runs: dict[date, list[JobRun]] = {}
    for run in store.edition_runs(session, "daily", first, today):
        runs.setdefault(run.edition_date, []).append(run)
    tallies = store.delivery_tallies(session, [edition.id for edition in editions.values()])
    stories = []
    for offset in range(DAYS):
        day = today - timedelta(days=offset)
        times = day_fire_times(config, schedule, day)
        edition = editions.get(day)
        story = {"date": day.isoformat(), "weekday": day.strftime("%A"),
                 "due_at": iso(times[0]) if times else None, "edition_id": edition.id if edition else None}
        story |= explain_day(session, schedule, now, times, edition, tallies.get(edition.id) if edition else None,
                             runs.get(day, []))
        stories.append(story)
    return stories


def day_fire_times(config: Config, schedule: Schedule, day: date) -> list[datetime]:
    start = datetime.combine(day, time(), config.timezone)
    end = datetime.combine(day + timedelta(days=1), time(), config.timezone)
    return schedule.fire_times("daily", start - timedelta(seconds=1), end - timedelta(seconds=1))


def explain_day(session, schedule: Schedule, now: datetime, times: list[datetime], edition: Edition | None,
                tally: dict[str, int] | None, runs: list[JobRun]) -> dict:
    """`went_out`, a short `why` code and a sentence `story` for one day."""
    last = runs[-1] if runs else None
    if edition is not None and edition.status == "ready":
        return explain_ready(session, edition, tally or {}, last)
    if edition is not None:
        kind = next((code for prefix, code in EMPTY_KINDS if (edition.empty_reason or "").startswith(prefix)),
                    "no-new-papers")
        return {"went_out": False, "why": kind, "story": f"empty edition: {edition.empty_reason}"}
    if last is not None and last.outcome == "running":
        return {"went_out": False, "why": "running", "story": f"being built now (started {iso(last.started_at)})"}
    failed = [run for run in runs if run.outcome == "failed"]
    if failed and last.outcome in ("failed", "skipped"):
        then = f"; then {last.detail}" if last.outcome == "skipped" else ""
        return {"went_out": False, "why": "build-failed", "story": f"build failed: {failed[-1].detail}{then}"}
    if last is not None and last.outcome == "skipped":
        return {"went_out": False, "why": "skipped-stale", "story": f"skipped: {last.detail}"}
    if last is not None and last.outcome == "interrupted":
        return {"went_out": False, "why": "interrupted", "story": f"interrupted: {last.detail}"}
    if not times:
        return {"went_out": False, "why": "not-scheduled", "story": "no daily edition is scheduled on this day"}
    if times[0] > now:
        return {"went_out": False, "why": "not-due-yet", "story": f"due at {schedule.label(times[0])}"}
    return {"went_out": False, "why": "daemon-not-running",
            "story": f"no daemon was running at {schedule.label(times[0])} (nor caught up later)"}


def explain_ready(session, edition: Edition, tally: dict[str, int], last: JobRun | None) -> dict:
    sent, waiting = tally.get("sent", 0), tally.get("pending", 0) + tally.get("sending", 0)
    failed, skipped = tally.get("failed", 0), tally.get("skipped", 0)
    papers = edition.content.get("paper_count", 0)
    extras = ", ".join(f"{count} {label}" for count, label in ((failed, "failed"), (waiting, "waiting"),
                                                                (skipped, "skipped")) if count)
    if sent:
        story = f"sent to {sent} reader(s) ({papers} papers)" + (f"; {extras}" if extras else "")
        return {"went_out": True, "why": "sent", "story": story}
    trouble = f"; last run {last.outcome}: {last.detail}" if last is not None and last.outcome == "failed" else ""
    if waiting:
        return {"went_out": False, "why": "sending", "story": f"built; {waiting} message(s) waiting to be sent{trouble}"}
    if skipped:
        reasons = "; ".join(store.skip_reasons(session, edition.id))
        return {"went_out": False, "why": "skipped-stale", "story": f"built but not sent: {reasons}"}
    if failed:
        return {"went_out": False, "why": "send-failed", "story": f"every message failed ({failed}){trouble}"}
    return {"went_out": False, "why": "no-subscribers",
            "story": f"built ({papers} papers) but there was no confirmed subscriber to send it to"}
