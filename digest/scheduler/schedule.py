"""The daemon's notion of time: the [schedule] cron expressions as APScheduler triggers in `[digest] timezone`,
their fire times (local wall-clock times, so a 07:00 job stays at 07:00 across DST changes), the clock the daemon
reads (a test passes its own), and when a failing source is tried again."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Protocol

from apscheduler.triggers.cron import CronTrigger

from digest.config import Config
from digest.errors import ConfigError
from digest.models import utcnow
from digest.store.runs import SourceHealth

CRON_JOBS = ("ingest", "daily", "weekly")
PERIODS = ("daily", "weekly")
# How far back the daemon looks for a job's missed cron times: the latest missed ingest is enough; editions
# look back over a week so a missed weekly edition is still seen.
LOOKBACK = {"ingest": timedelta(days=1), "daily": timedelta(days=8), "weekly": timedelta(days=8)}


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()


def cron_trigger(name: str, expression: str, config: Config) -> CronTrigger:
    try:
        return CronTrigger.from_crontab(expression, timezone=config.timezone)
    except ValueError as exc:
        raise ConfigError(f"{config.path}: key 'schedule.{name}': invalid cron expression {expression!r}: {exc}") from None


class Schedule:
    """The [schedule] cron expressions as APScheduler triggers in `[digest] timezone`, and their fire times."""

    def __init__(self, config: Config) -> None:
        self.timezone = config.timezone
        self.triggers = {name: cron_trigger(name, getattr(config.schedule, name), config) for name in CRON_JOBS}

    def fire_times(self, job: str, after: datetime, until: datetime) -> list[datetime]:
        """The job's cron times in (after, until], oldest first, in the configured timezone."""
        trigger = self.triggers[job]
        times = []
        moment = trigger.get_next_fire_time(None, (after + timedelta(seconds=1)).astimezone(self.timezone))
        while moment is not None and moment <= until:
            times.append(moment)
            moment = trigger.get_next_fire_time(moment, moment + timedelta(seconds=1))
        return times

    def latest(self, job: str, now: datetime) -> list[datetime]:
        """The job's cron times within its look-back window before `now`."""
        return self.fire_times(job, now - LOOKBACK[job], now)

    def next_time(self, job: str, now: datetime) -> datetime | None:
        return self.triggers[job].get_next_fire_time(None, (now + timedelta(seconds=1)).astimezone(self.timezone))

    def local_day(self, moment: datetime) -> date:
        return moment.astimezone(self.timezone).date()

    def label(self, moment: datetime) -> str:
        return moment.astimezone(self.timezone).strftime("%Y-%m-%d %H:%M %Z")


def backing_off(config: Config, health: SourceHealth, now: datetime) -> datetime | None:
    """Until when the daemon leaves a failing source alone (None: try it now). After `source_backoff_after`
    failures in a row it waits `source_backoff_hours` since the last attempt, doubling with each further
    failure up to `source_backoff_max_hours`."""
    settings = config.schedule
    extra = health.failures_in_a_row - settings.source_backoff_after
    if extra < 0 or health.last_attempt is None:
        return None
    hours = min(settings.source_backoff_max_hours, settings.source_backoff_hours * 2 ** extra)
    until = health.last_attempt + timedelta(hours=hours)
    return until if until > now else None
