"""The real `digest run` process: the whole chain after a missed due time, catch-up after days down, two
daemons on one database with a SIGKILL, and SIGTERM in the middle of summarising and of sending.

The configured zone is picked so that it is 09:xx there now: the 07:00 daily edition is due and was missed.
Leases are short (3 s, heartbeat 0.5 s) so takeovers happen quickly."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, time as day_time, timedelta, timezone
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from chat_server import ChatServer
from conftest import BASE_CONFIG, CORPUS
from digest import pipeline
from digest.config import load_config
from digest.models import DaemonProcess, Delivery, Edition, JobRun, Paper, SchedulerLease, Subscriber, Summary
from digest.scheduler.daemon import Daemon
from digest.store import open_database, session_scope
from smtp_server import free_port
from test_deliver import email_settings
from test_scheduler import FakeClock

pytestmark = pytest.mark.usefixtures("secret")

UTC = timezone.utc
LEASE_SECONDS = 3.0
THEMES = """
[assign]
other_bucket = false
min_similarity = 1.0

[[themes]]
name = "Image and video generation"
keywords = ["diffusion", "image", "video"]

[[themes]]
name = "Language models"
keywords = ["language model", "LLM"]
"""


def zone_at_nine() -> str:
    """An IANA zone (fixed offset) where the local time now is between 09:00 and 10:00."""
    offset = (9 - datetime.now(UTC).hour) % 24
    offset = offset - 24 if offset > 14 else offset
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-9 is UTC+9


def corpus_feed(path: Path, numbers: range | list[int]) -> Path:
    """An RSS feed of the corpus papers with these line numbers, written to `path`."""
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    records = [json.loads(lines[number]) for number in numbers]
    items = "".join(
        f"<item><title>{escape(r['title'])}</title><link>https://papers.example/{n}</link>"
        f"<guid>https://papers.example/{n}</guid><description>{escape(r['abstract'])}</description></item>"
        for n, r in enumerate(records)
    )
    path.write_text(f'<?xml version="1.0"?><rss version="2.0"><channel><title>Papers</title>'
                    f"<link>https://papers.example/</link><description>test</description>{items}</channel></rss>",
                    encoding="utf-8")
    return path


@pytest.fixture
def feeds(tmp_path):
    """A folder served over HTTP on loopback; returns (folder, base URL)."""
    folder = tmp_path / "feeds"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def daemon_config(write_config, smtp):
    """Write a config for the process tests (zone at 09:xx, short lease, mail to `smtp`) plus `extra` TOML."""

    def make(extra: str = "", summariser: str = '[summariser]\nbackend = "extractive"\n', **mail):
        base = BASE_CONFIG.replace('timezone = "UTC"', f'timezone = "{zone_at_nine()}"')
        schedule = (f"[schedule]\nlease_seconds = {LEASE_SECONDS}\nheartbeat_seconds = 0.5\n"
                    "stop_timeout_seconds = 5\n")
        web = f"[web]\nport = {free_port()}\n"
        mail = {"retry_backoff_seconds": 3600} | mail
        config = load_config(write_config(THEMES + summariser + schedule + web + email_settings(smtp, **mail) + extra,
                                          base=base))
        return config, open_database(config.database_url)

    return make


@pytest.fixture
def start(tmp_path):
    """Start `digest run ARGS` as a real process, its log in `<name>.log`: `start(name, *args)`. Any still
    running when the test ends (it failed midway) is killed."""
    processes = []

    def launch(name: str, *args: str) -> subprocess.Popen:
        log = (tmp_path / f"{name}.log").open("w")
        process = subprocess.Popen([sys.executable, "-m", "digest", "run", *args], stdout=log,
                                   stderr=subprocess.STDOUT, env=os.environ | {"NO_COLOR": "1"})
        processes.append(process)
        return process

    yield launch
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def digest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digest", *args], capture_output=True, text=True, timeout=120,
                          env=os.environ | {"NO_COLOR": "1"})


def wait_for(condition, timeout: float = 90.0, what: str = "condition"):
    """Poll `condition` (which may read the database while the daemon writes it) until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if result := condition():
                return result
        except OperationalError:  # SQLite busy past its timeout: ask again
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stop(process: subprocess.Popen, log: Path) -> tuple[int, float]:
    """SIGTERM the daemon; return its exit code and the seconds from the signal to its `stopped` log line (the
    interpreter's teardown after that, slow for a process holding a model on a busy machine, is not counted)."""
    sent = datetime.now().astimezone()
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=120)
    [line] = [line for line in log.read_text().splitlines() if line.endswith(" stopped") or '"stopped"' in line]
    if line.startswith("{"):
        stopped = datetime.fromisoformat(json.loads(line)["time"])
    else:
        stopped = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").astimezone()
    return code, (stopped - sent).total_seconds()


def add_readers(engine, count: int) -> list[str]:
    emails = [f"reader{index}@example.com" for index in range(count)]
    with session_scope(engine) as session:
        session.add_all(Subscriber(email=email, status="confirmed") for email in emails)
    return emails


def job_runs(engine, job: str) -> list[JobRun]:
    with session_scope(engine) as session:
        return list(session.scalars(select(JobRun).where(JobRun.job == job).order_by(JobRun.id)))


def finished(engine, job: str, outcome: str = "ok") -> bool:
    return any(run.outcome == outcome for run in job_runs(engine, job))


def standby_pids(engine) -> set[int]:
    with session_scope(engine) as session:
        return set(session.scalars(select(DaemonProcess.pid).where(DaemonProcess.role == "standby")))


def lease(engine) -> SchedulerLease:
    with session_scope(engine) as session:
        return session.get(SchedulerLease, "scheduler")


def delivery_statuses(engine) -> Counter:
    with session_scope(engine) as session:
        return Counter(session.scalars(select(Delivery.status)))


def received(smtp) -> Counter:
    return Counter(recipient for message in smtp.messages for recipient in message.recipients)


def local_today(config) -> datetime:
    return datetime.now(config.timezone)


# --- The whole chain -------------------------------------------------------------------------------------


@pytest.mark.only_on("sqlite")  # the model's minutes once are enough; the other process tests run on both
@pytest.mark.timeout(900)  # the model on a CPU shared with other work can take minutes
def test_whole_chain_a_daemon_started_after_the_due_time_sends_that_days_edition_once(
        daemon_config, feeds, smtp, model_cache, start, tmp_path):
    """No daemon at 07:00; started at 09:xx: it ingests local feeds over HTTP, summarises with the bundled
    model, builds and sends the day's edition once, serves the subscribe page, and `digest status --json`
    tells the day's story."""
    folder, base_url = feeds
    corpus_feed(folder / "papers.xml", [0, 2])  # two image-generation papers: two TL;DRs and one overview
    config, engine = daemon_config(
        f'[[sources]]\nname = "papers"\nkind = "feed"\nurl = "{base_url}/papers.xml"\n',
        summariser=f'[summariser]\ncache_dir = "{model_cache}"\n')
    readers = add_readers(engine, 2)

    daemon = start("daemon", "--serve")
    wait_for(lambda: finished(engine, "daily"), timeout=800, what="the daily edition")
    page = httpx.get(f"http://127.0.0.1:{config.web.port}/", timeout=10)
    code, _ = stop(daemon, tmp_path / "daemon.log")

    assert code == 0, (tmp_path / "daemon.log").read_text()
    assert page.status_code == 200 and "subscribe" in page.text.lower()
    assert received(smtp) == {reader: 1 for reader in readers}
    status = json.loads(digest("status", "--json").stdout)
    today = status["days"][0]
    assert today["date"] == local_today(config).date().isoformat()
    assert (today["went_out"], today["why"]) == (True, "sent") and today["story"].startswith("sent to 2 reader(s)")
    jobs = {job["job"]: job["last_run"] for job in status["jobs"]}
    assert jobs["ingest"]["outcome"] == "ok" and jobs["ingest"]["counts"]["papers_new"] == 2
    assert jobs["summarise"]["outcome"] == "ok" and jobs["summarise"]["counts"]["summaries_made"] == 2
    assert jobs["daily"]["trigger"] == "catch-up" and jobs["daily"]["counts"] == {"messages_sent": 2}
    assert status["editions"][0]["deliveries"] == {"sent": 2} and status["daemon"]["active"] is None
    with session_scope(engine) as session:
        assert {s.model for s in session.scalars(select(Summary))} == {"smollm2"}

    again = digest("run", "--once")
    assert again.returncode == 0, again.stderr
    assert received(smtp) == {reader: 1 for reader in readers} and len(job_runs(engine, "daily")) == 1


def test_after_three_days_down_only_the_latest_edition_is_sent_and_older_ones_are_recorded_skipped(
        daemon_config, smtp, tmp_path):
    """Three days ago the daemon built and sent that day's edition (one reader deferred), then the machine was
    down until now."""
    config, engine = daemon_config()
    readers = add_readers(engine, 2)
    today = local_today(config).date()
    three_days_ago = today - timedelta(days=3)
    pipeline_paper(engine, three_days_ago, config)
    earlier = Daemon(config, engine, FakeClock(datetime.combine(three_days_ago, day_time(7, 5), config.timezone)))
    earlier.beat(None)
    smtp.handler.refuse(readers[1], "451 try again later")
    earlier.catch_up()
    earlier.shut_down(None)
    smtp.handler.refusals.clear()
    pipeline_paper(engine, today, config)

    run = digest("run", "--once")

    assert run.returncode == 0, run.stderr
    daily = {(today - run.edition_date).days: run for run in job_runs(engine, "daily")}
    assert {age: r.outcome for age, r in daily.items()} == {3: "ok", 2: "skipped", 1: "skipped", 0: "ok"}
    assert "the daemon was not running" in daily[1].detail and daily[0].trigger == "catch-up"
    assert received(smtp) == {readers[0]: 2, readers[1]: 1}  # three days ago, and today
    with session_scope(engine) as session:
        by_day = {e.start_date: e.id for e in session.scalars(select(Edition))}
        old = session.scalars(select(Delivery).where(Delivery.edition_id == by_day[three_days_ago])).all()
        assert {(row.status, row.error) for row in old} == {
            ("sent", None), ("skipped", f"superseded by the daily edition of {today}")}
    days = {day["date"]: day["why"] for day in json.loads(digest("status", "--json").stdout)["days"]}
    assert [days[str(today - timedelta(days=age))] for age in range(4)] == [
        "sent", "skipped-stale", "skipped-stale", "sent"]


def pipeline_paper(engine, day, config) -> None:
    """A paper first seen at 06:00 local on `day`, with its theme and TL;DR already written."""
    seen = datetime.combine(day, day_time(6), config.timezone)
    record = json.loads(CORPUS.read_text(encoding="utf-8").splitlines()[day.toordinal() % 40])
    with session_scope(engine) as session:
        session.add(Paper(key=f"test:{day}", title=f"Diffusion: {record['title']}", title_norm=str(day),
                          abstract=record["abstract"], first_seen_at=seen, last_seen_at=seen))
    pipeline.summarise(config, engine)


# --- One active daemon per database ------------------------------------------------------------------------


def test_two_daemons_one_acts_and_the_other_takes_over_within_a_lease_period_after_sigkill(
        daemon_config, smtp, start, tmp_path):
    config, engine = daemon_config()
    readers = add_readers(engine, 3)
    pipeline_paper(engine, local_today(config).date(), config)

    first, second = start("first"), start("second", "--log-json")
    wait_for(lambda: finished(engine, "daily"), what="the daily edition")
    active, standby = (first, second) if lease(engine).pid == first.pid else (second, first)
    wait_for(lambda: standby.pid in standby_pids(engine), what="the standby's heartbeat")
    active.send_signal(signal.SIGKILL)
    active.wait()
    holder = lease(engine)  # as the killed daemon last renewed it
    taken = wait_for(lambda: (row := lease(engine)).pid == standby.pid and row, timeout=3 * LEASE_SECONDS,
                     what="the takeover")
    time.sleep(1)  # the new holder catches up: nothing is due
    code, seconds = stop(standby, tmp_path / ("first.log" if standby is first else "second.log"))

    assert code == 0 and seconds < 5
    assert (taken.acquired_at - holder.renewed_at).total_seconds() <= LEASE_SECONDS + 1.0  # lease plus scheduling slack
    assert received(smtp) == {reader: 1 for reader in readers}
    assert [run.outcome for run in job_runs(engine, "daily")] == ["ok"]
    assert lease(engine).holder is None  # released on SIGTERM
    logs = [json.loads(line) for line in (tmp_path / "second.log").read_text().splitlines() if line.startswith("{")]
    assert logs and {"time", "level", "logger", "message"} <= set(logs[0])
    assert any(entry.get("event") in ("active", "standby") for entry in logs)


# --- SIGTERM at safe points --------------------------------------------------------------------------------


@pytest.mark.only_on("sqlite")  # where summaries stop does not depend on the database
def test_sigterm_mid_summarise_stops_after_a_committed_batch_and_the_next_start_resumes(
        daemon_config, smtp, start, tmp_path):
    with ChatServer() as chat:
        chat.delay = 0.25
        feed = corpus_feed(tmp_path / "papers.xml", range(12))
        config, engine = daemon_config(
            f'[[sources]]\nname = "papers"\nkind = "feed"\nurl = "{feed}"\n',
            summariser=f'[summariser]\nbackend = "openai"\nmodel = "tiny"\nbase_url = "{chat.url}"\nconcurrency = 1\n')
        readers = add_readers(engine, 1)
        count = lambda: session_count(engine, Summary)  # noqa: E731

        daemon = start("daemon")
        wait_for(lambda: count() >= 4, what="the first batch of summaries")
        code, seconds = stop(daemon, tmp_path / "daemon.log")
        stopped_with = count()

        assert code == 0 and seconds < 5, (tmp_path / "daemon.log").read_text()
        assert stopped_with % 4 == 0 and stopped_with < 12  # whole batches of 4, committed; the rest not started
        assert [run.outcome for run in job_runs(engine, "summarise")] == ["interrupted"]

        resumed = digest("run", "--once")

        assert resumed.returncode == 0, resumed.stderr
        [first, second] = job_runs(engine, "summarise")
        assert (second.outcome, second.summaries_cached, second.summaries_made) == ("ok", stopped_with, 12 - stopped_with)
        assert received(smtp) == {reader: 1 for reader in readers}


def session_count(engine, model) -> int:
    with session_scope(engine) as session:
        return session.scalar(select(func.count()).select_from(model))


def test_sigterm_mid_send_marks_the_message_in_flight_and_the_next_start_sends_the_rest_once(
        daemon_config, smtp, start, tmp_path):
    config, engine = daemon_config()
    readers = add_readers(engine, 30)
    pipeline_paper(engine, local_today(config).date(), config)
    pipeline.build_edition(config, engine, "daily", local_today(config).date())
    smtp.handler.delay_seconds = 0.1

    daemon = start("daemon")
    wait_for(lambda: len(smtp.messages) >= 5, what="the first messages")
    code, seconds = stop(daemon, tmp_path / "daemon.log")

    assert code == 0 and seconds < 5, (tmp_path / "daemon.log").read_text()
    statuses = delivery_statuses(engine)
    assert statuses["sent"] == len(smtp.messages) and "sending" not in statuses
    assert statuses["pending"] == 30 - statuses["sent"] > 0
    [interrupted] = job_runs(engine, "daily")
    assert interrupted.outcome == "interrupted" and interrupted.edition_id is not None

    smtp.handler.delay_seconds = 0
    resumed = digest("run", "--once")

    assert resumed.returncode == 0, resumed.stderr
    assert received(smtp) == {reader: 1 for reader in readers}
    assert [run.outcome for run in job_runs(engine, "daily")] == ["interrupted", "ok"]
    assert delivery_statuses(engine) == {"sent": 30}
