"""`digest run`: the scheduled daemon, or one of its jobs once."""

from __future__ import annotations

import logging
from enum import Enum

import typer

from digest.cli.app import CliState, app


class Job(str, Enum):
    ingest = "ingest"
    daily = "daily"
    weekly = "weekly"


@app.command()
def run(
    ctx: typer.Context,
    once: Job = typer.Option(None, "--once", help="Run this job once now and exit, instead of starting the daemon."),
) -> None:
    """Run the daemon: fetch feeds and build and send the daily and weekly editions on the [schedule] cron times.

    Stop it with Ctrl-C. A failing job is logged and retried at its next time; nothing already stored is lost.
    """
    from digest.scheduler import build_scheduler, run_job  # imports every stage: only when needed

    state: CliState = ctx.obj
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config, engine = state.config, state.engine
    if once is not None:
        if not run_job(once.value, config, engine):
            raise typer.Exit(1)
        return
    scheduler = build_scheduler(config, engine)
    for job in scheduler.get_jobs():
        state.console.print(f"{job.name}: {job.trigger}")
    state.console.print("digest daemon running; Ctrl-C to stop.")
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        state.console.print("Stopped.")
