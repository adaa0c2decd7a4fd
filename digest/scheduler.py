"""The daemon: runs ingest, and builds and sends the daily and weekly editions, on the cron schedules in `[schedule]`.

Each job calls one pipeline function. A job that fails is logged and the daemon carries on; the next run picks
up where the store says things stand (feeds re-fetched conditionally, unsent outbox rows resumed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine

from digest import pipeline
from digest.config import Config
from digest.errors import ConfigError, DigestError

log = logging.getLogger(__name__)

def ingest_job(config: Config, engine: Engine) -> None:
    report = pipeline.ingest(config, engine)
    for failure in report.failures:
        log.warning("ingest: %s", failure)


def edition_job(period: str) -> Callable[[Config, Engine], None]:
    """A job that builds the period's edition (theming and summarising its papers first) and sends it."""

    def run(config: Config, engine: Engine) -> None:
        edition = pipeline.build_edition(config, engine, period)
        if edition.status != "ready":
            log.info("%s edition %s: nothing to send (%s)", period, edition.start_date, edition.empty_reason)
            return
        report = pipeline.send_edition(config, engine, edition.id)
        log.info("%s edition %s sent: %s", period, edition.start_date, report)

    return run


JOBS: dict[str, Callable[[Config, Engine], None]] = {
    "ingest": ingest_job,
    "daily": edition_job("daily"),
    "weekly": edition_job("weekly"),
}


def run_job(name: str, config: Config, engine: Engine) -> bool:
    """Run one job now; log its error instead of raising so the daemon keeps going. True when it succeeded."""
    try:
        JOBS[name](config, engine)
    except DigestError as exc:
        log.error("%s job failed: %s", name, exc)
        return False
    except Exception:
        log.exception("%s job crashed", name)
        return False
    return True


def cron_trigger(name: str, expression: str, config: Config) -> CronTrigger:
    try:
        return CronTrigger.from_crontab(expression, timezone=config.timezone)
    except ValueError as exc:
        raise ConfigError(f"{config.path}: key 'schedule.{name}': invalid cron expression {expression!r}: {exc}") from None


def build_scheduler(config: Config, engine: Engine) -> BlockingScheduler:
    """A scheduler with one job per `[schedule]` entry; missed runs are coalesced into one, never run twice at once."""
    scheduler = BlockingScheduler(timezone=config.timezone)
    for name in JOBS:
        scheduler.add_job(
            run_job,
            cron_trigger(name, getattr(config.schedule, name), config),
            args=(name, config, engine),
            id=name,
            name=f"digest {name}",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=3600,
        )
    return scheduler
