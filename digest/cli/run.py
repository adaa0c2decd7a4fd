"""`digest run`: the scheduled daemon, what is due now (`--once`), or one job now (`--once JOB`)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime
from enum import Enum

import typer

from digest.cli.app import CliState, app
from digest.errors import StoreError


class Job(str, Enum):
    ingest = "ingest"
    daily = "daily"
    weekly = "weekly"


class JsonLines(logging.Formatter):
    """One JSON object per log record: time, level, logger, message, and the job fields a record carries."""

    FIELDS = ("job", "event", "outcome", "counts")

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")
        entry = {"time": moment, "level": record.levelname,
                 "logger": record.name, "message": record.getMessage()}
        entry |= {name: getattr(record, name) for name in self.FIELDS if hasattr(record, name)}
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(as_json: bool) -> None:
    """Log lines (or JSON lines) to stderr at INFO, quieting libraries that would drown the daemon's own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])  # leaves a host's own logging alone
    for chatty in ("alembic", "apscheduler", "httpx"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def open_patiently(state: CliState):
    """The database engine, waiting for the database to come up (a daemon may start before it): retried with
    backoff up to a minute apart, each failure logged."""
    delay = 1.0
    while True:
        try:
            return state.engine
        except StoreError as exc:
            logging.getLogger("digest.scheduler").warning("%s; retrying in %gs", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 60.0)


def start_web(state: CliState):
    """The subscribe page in a thread of this process (uvicorn, logging through ours); returns its server."""
    import uvicorn

    from digest.web import create_app

    web = state.config.web
    server = uvicorn.Server(uvicorn.Config(create_app(state.config), host=web.host, port=web.port, log_config=None))
    threading.Thread(target=server.run, name="digest-web", daemon=True).start()
    return server


@app.command()
def run(
    ctx: typer.Context,
    once: bool = typer.Option(
        False, "--once", help="Run whatever is due now (or only JOB), then exit, instead of staying running; for cron."
    ),
    job: Job = typer.Argument(None, help="With --once: run this job now (ingest, daily or weekly), due or not."),
    serve: bool = typer.Option(False, "--serve", help="Also serve the subscribe page ([web] host and port)."),
    log_json: bool = typer.Option(False, "--log-json", help="Log JSON lines to stderr instead of readable text."),
) -> None:
    """Run the daemon: fetch feeds, summarise, and build and send the daily and weekly editions on the [schedule]
    cron times, catching up from the database on anything missed while it was not running.

    One daemon acts per database; a second one waits as a standby and takes over if the first stops. Stop it
    with Ctrl-C or SIGTERM: the running job stops at its next safe point. `digest status` shows what it did.
    """
    from digest.scheduler.daemon import Daemon  # imports every stage: only when needed

    state: CliState = ctx.obj
    if job is not None and not once:
        raise typer.BadParameter("a JOB runs only with --once (digest run --once daily)", param_hint="JOB")
    configure_logging(log_json)
    engine = state.engine if once else open_patiently(state)
    daemon = Daemon(state.config, engine)
    previous = {signum: signal.signal(signum, lambda number, _frame: daemon.stop(signal.Signals(number).name))
                for signum in (signal.SIGTERM, signal.SIGINT)}
    server = start_web(state) if serve else None
    try:
        result = daemon.run(once=once, forced=job.value if job else None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if server is not None:
            server.should_exit = True
    if result == "abandoned":
        # The worker thread is still inside a job (generating, or waiting on a server): leave without it.
        logging.shutdown()
        os._exit(0)
    if result == "refused":
        logging.getLogger("digest.scheduler").warning("another daemon holds the scheduler lease; nothing done")
        if job is not None:
            raise typer.Exit(1)
    if result == "failed" and once:
        raise typer.Exit(1)
