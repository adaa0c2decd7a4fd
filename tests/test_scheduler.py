"""The daemon's decisions, driven by an injected clock (no sleeping): what is due after downtime, one edition
per period and day through DST changes, the lease between two daemons, failing jobs and sources, and what
`digest status` says about each day. `test_daemon.py` runs the real `digest run` process."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from conftest import BASE_CONFIG, CORPUS, FIXTURES
from digest import pipeline
from digest.cli import app
from digest.config import load_config
from digest.errors import ConfigError
from digest.models import Delivery, Edition, FetchLog, JobRun, Paper, Subscriber
from digest.scheduler.daemon import Daemon, Due
from digest.scheduler.schedule import Schedule
from digest.scheduler.status import status_report
from digest.store import open_database, session_scope
from digest.store import runs as store
from test_deliver import email_settings

pytestmark = pytest.mark.usefixtures("secret")

UTC = timezone.utc
RECORDS = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
SETTINGS = """
[summariser]
backend = "extractive"

[assign]
other_bucket = false
min_similarity = 1.0

[[themes]]
name = "Image and video generation"
keywords = ["diffusion", "image", "video"]

[schedule]
ingest = "0 */4 * * *"
daily = "0 7 * * *"
weekly = "0 8 * * wed"
"""


class FakeClock:
    """The daemon's clock, moved by the test."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


def make_config(write_config, extra: str = "", zone: str = "UTC", smtp=None):
    """The settings above (plus `extra` TOML) in `zone`, sending to `smtp`; deferred messages wait an hour."""
    base = BASE_CONFIG.replace('timezone = "UTC"', f'timezone = "{zone}"')
    mail = email_settings(smtp, retry_backoff_seconds=3600) if smtp else ""
    return load_config(write_config(SETTINGS + mail + extra, base=base))


def tweak(config, section: str, **values):
    """The config with some keys of one section changed (for values the shared TOML above already sets)."""
    return config.model_copy(update={section: getattr(config, section).model_copy(update=values)})


def add_paper(engine, number: int, seen: datetime, title: str | None = None, abstract: str | None = None) -> int:
    """A corpus paper (its title made about diffusion, so it lands in the theme) first seen at `seen`."""
    record = RECORDS[number]
    with session_scope(engine) as session:
        paper = Paper(key=f"test:{number}", title=title or f"Diffusion: {record['title']}",
                      title_norm=f"paper {number}", abstract=abstract or record["abstract"], first_seen_at=seen,
                      last_seen_at=seen)
        session.add(paper)
        session.flush()
        return paper.id


def add_readers(engine, count: int) -> None:
    with session_scope(engine) as session:
        for index in range(count):
            session.add(Subscriber(email=f"reader{index}@example.com", status="confirmed"))


def runs(engine, job: str | None = None) -> list[JobRun]:
    with session_scope(engine) as session:
        query = select(JobRun).order_by(JobRun.id)
        return list(session.scalars(query.where(JobRun.job == job) if job else query))


def editions(engine) -> list[Edition]:
    with session_scope(engine) as session:
        return list(session.scalars(select(Edition).order_by(Edition.start_date, Edition.period)))


def active_daemon(config, engine, clock) -> Daemon:
    daemon = Daemon(config, engine, clock)
    daemon.beat(None)
    assert daemon.holding
    return daemon


# --- The schedule ------------------------------------------------------------------------------------------


@pytest.mark.no_database
def test_invalid_cron_expression_names_the_key(write_config):
    config = load_config(write_config('[schedule]\nweekly = "every monday"\n'))
    with pytest.raises(ConfigError, match=r"schedule\.weekly.*every monday"):
        Schedule(config)


@pytest.mark.no_database
def test_heartbeat_longer_than_a_third_of_the_lease_is_a_config_error(write_config):
    with pytest.raises(ConfigError, match=r"schedule.*heartbeat_seconds \(30\).*lease_seconds \(60\)"):
        load_config(write_config("[schedule]\nheartbeat_seconds = 30\n"))


@pytest.mark.no_database
@pytest.mark.parametrize(("day", "utc_hours"), [(date(2026, 3, 29), (6, 5, 5)), (date(2026, 10, 25), (5, 6, 6))],
                         ids=["spring-forward", "fall-back"])
def test_a_daily_cron_time_is_local_wall_clock_time_across_dst(write_config, day, utc_hours):
    config = make_config(write_config, zone="Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime.combine(day - timedelta(days=1), datetime.min.time(), berlin)
    times = Schedule(config).fire_times("daily", start, start + timedelta(days=3) - timedelta(seconds=1))
    assert [t.astimezone(berlin).hour for t in times] == [7, 7, 7]
    assert [t.astimezone(UTC).hour for t in times] == list(utc_hours)


# --- Catching up from the database -------------------------------------------------------------------------


@pytest.mark.only_on("sqlite")  # the decisions are the same on both databases; one is enough for 144 checks
@pytest.mark.parametrize("day", [date(2026, 3, 29), date(2026, 10, 25)], ids=["spring-forward", "fall-back"])
def test_on_dst_days_the_daily_edition_is_built_once_and_holds_the_local_day(write_config, smtp, day):
    """A daemon checking every 30 minutes from the day before to the day after a DST change in its zone."""
    config = tweak(make_config(write_config, zone="Europe/Berlin", smtp=smtp), "email", send_by_hours=6)
    engine = open_database(config.database_url)
    berlin = ZoneInfo("Europe/Berlin")
    local = lambda d, h, m=0: datetime(d.year, d.month, d.day, h, m, tzinfo=berlin)  # noqa: E731
    before = add_paper(engine, 0, local(day - timedelta(days=1), 23, 30))
    early = add_paper(engine, 1, local(day, 0, 30))
    late = add_paper(engine, 2, local(day, 23, 30))
    after = add_paper(engine, 3, local(day + timedelta(days=1), 0, 30))
    add_readers(engine, 1)
    clock = FakeClock(local(day - timedelta(days=1), 0))
    daemon = active_daemon(config, engine, clock)

    while clock.now() < local(day + timedelta(days=1), 12):
        daemon.catch_up()
        clock.advance(minutes=30)

    daily = [run for run in runs(engine, "daily") if run.outcome != "skipped"]  # the day before the first is stale
    assert [(run.edition_date, run.due_at.astimezone(berlin).hour, run.outcome) for run in daily] == [
        (day - timedelta(days=1), 7, "ok"), (day, 7, "ok"), (day + timedelta(days=1), 7, "ok")]
    built = {e.start_date: e for e in editions(engine) if e.period == "daily"}
    assert set(built) == {day - timedelta(days=1), day, day + timedelta(days=1)}
    ids = lambda e: {p["paper_id"] for theme in e.content["themes"] for p in theme["papers"]}  # noqa: E731
    assert ids(built[day]) == {early, late}
    assert before in ids(built[day - timedelta(days=1)]) and after in ids(built[day + timedelta(days=1)])
    assert len(smtp.messages) == 3


def test_an_edition_missed_while_down_is_built_and_sent_once_when_the_daemon_starts(write_config, smtp):
    config = make_config(write_config, smtp=smtp)
    engine = open_database(config.database_url)
    add_paper(engine, 0, datetime(2026, 11, 10, 5, tzinfo=UTC))
    add_readers(engine, 2)
    clock = FakeClock(datetime(2026, 11, 10, 9, 0, tzinfo=UTC))  # down at 07:00, started at 09:00
    daemon = active_daemon(config, engine, clock)

    daemon.catch_up()
    clock.advance(minutes=30)
    daemon.catch_up()

    [run] = runs(engine, "daily")
    assert (run.trigger, run.edition_date, run.outcome, run.messages_sent) == ("catch-up", date(2026, 11, 10), "ok", 2)
    assert len(editions(engine)) == 1 and len(smtp.messages) == 2


def test_after_days_down_only_the_latest_edition_is_sent_and_older_ones_are_recorded_skipped(write_config, smtp):
    config = make_config(write_config, smtp=smtp)
    engine = open_database(config.database_url)
    add_readers(engine, 2)
    clock = FakeClock(datetime(2026, 11, 9, 7, 5, tzinfo=UTC))
    daemon = active_daemon(config, engine, clock)
    add_paper(engine, 0, datetime(2026, 11, 9, 6, tzinfo=UTC))
    daemon.catch_up()  # Monday's edition, on time
    add_paper(engine, 1, datetime(2026, 11, 10, 6, tzinfo=UTC))
    clock.moment = datetime(2026, 11, 10, 7, 0, 30, tzinfo=UTC)
    smtp.handler.refuse("reader1@example.com", "451 try again later")
    daemon.catch_up()  # Tuesday's edition: reader1 deferred, then the daemon goes down
    add_paper(engine, 2, datetime(2026, 11, 12, 6, tzinfo=UTC))
    smtp.handler.refusals.clear()

    clock.moment = datetime(2026, 11, 12, 9, tzinfo=UTC)  # back on Thursday
    daemon.catch_up()

    daily = {run.edition_date.day: (run.outcome, run.detail or "") for run in runs(engine, "daily")}
    assert daily[9][0] == daily[10][0] == daily[12][0] == "ok"
    assert daily[11][0] == "skipped" and "the daemon was not running" in daily[11][1]
    tuesday = next(e for e in editions(engine) if e.start_date == date(2026, 11, 10))
    with session_scope(engine) as session:
        left = session.scalars(select(Delivery).where(Delivery.edition_id == tuesday.id, Delivery.status != "sent")).all()
    assert [(row.status, row.error) for row in left] == [("skipped", "superseded by the daily edition of 2026-11-12")]
    assert [m.recipients[0] for m in smtp.messages].count("reader1@example.com") == 2  # Monday and Thursday
    assert not any(e.start_date == date(2026, 11, 11) for e in editions(engine))


def test_an_edition_older_than_send_by_hours_is_recorded_stale_and_not_built(write_config, smtp):
    config = tweak(make_config(write_config, smtp=smtp), "email", send_by_hours=12)
    engine = open_database(config.database_url)
    add_paper(engine, 0, datetime(2026, 11, 10, 5, tzinfo=UTC))
    daemon = active_daemon(config, engine, FakeClock(datetime(2026, 11, 10, 20, tzinfo=UTC)))

    daemon.catch_up()

    [run] = runs(engine, "daily")
    assert run.outcome == "skipped" and run.detail.startswith("stale: due at 2026-11-10 07:00 UTC")
    assert editions(engine) == []


def test_a_manual_build_and_the_daemon_share_one_edition(write_config, smtp):
    config = make_config(write_config, smtp=smtp)
    engine = open_database(config.database_url)
    add_paper(engine, 0, datetime(2026, 11, 10, 5, tzinfo=UTC))
    add_readers(engine, 1)
    manual = pipeline.build_edition(config, engine, "daily", date(2026, 11, 10))
    daemon = active_daemon(config, engine, FakeClock(datetime(2026, 11, 10, 7, 1, tzinfo=UTC)))

    daemon.catch_up()
    again = pipeline.build_edition(config, engine, "daily", date(2026, 11, 10), rebuild=True)

    assert [e.id for e in editions(engine)] == [manual.id] == [again.id]
    assert runs(engine, "daily")[0].edition_id == manual.id and len(smtp.messages) == 1


def test_a_failing_job_is_recorded_retried_with_backoff_and_the_daemon_carries_on(write_config, smtp, tmp_path):
    broken = tmp_path / "broken-templates" / "email"
    broken.mkdir(parents=True)
    (broken / "edition.txt.j2").write_text("{{ no_such_value }}\n", encoding="utf-8")
    config = make_config(write_config, smtp=smtp)
    failing = tweak(config, "digest", templates_dir=tmp_path / "broken-templates")
    engine = open_database(config.database_url)
    add_paper(engine, 0, datetime(2026, 11, 10, 5, tzinfo=UTC))
    add_readers(engine, 1)
    clock = FakeClock(datetime(2026, 11, 10, 7, 0, 10, tzinfo=UTC))
    daemon = active_daemon(failing, engine, clock)

    daemon.catch_up()
    clock.advance(minutes=1)
    daemon.catch_up()  # too soon to retry
    clock.advance(minutes=5)
    daemon.catch_up()  # retried after one check interval: fails again
    outcomes = [(run.outcome, run.detail) for run in runs(engine, "daily")]
    daemon.config = config  # the template is fixed
    clock.advance(minutes=6)
    daemon.catch_up()  # not yet: the second failure doubled the delay
    clock.advance(minutes=5)
    daemon.catch_up()

    assert [outcome for outcome, _ in outcomes] == ["failed", "failed"]
    assert "edition.txt.j2" in outcomes[0][1] and "no_such_value" in outcomes[0][1]
    assert [run.outcome for run in runs(engine, "daily")] == ["failed", "failed", "ok"]
    assert len(smtp.messages) == 1


def test_summarise_runs_after_an_ingest_that_stored_papers_and_resumes_if_interrupted(write_config):
    config = make_config(write_config, f'[[sources]]\nname = "rss"\nkind = "arxiv-rss"\nurl = "{FIXTURES / "arxiv_rss.xml"}"\n')
    config = tweak(config, "summariser", batch_size=1)  # TL;DRs are committed 4 at a time
    engine = open_database(config.database_url)
    clock = FakeClock(datetime.now(UTC))
    daemon = active_daemon(config, engine, clock)
    daemon.execute(daemon.due_ingest(clock.now())[0])
    [due] = daemon.due_summarise(clock.now())
    safe_point = daemon.safe_point

    def sigterm_while_the_first_batch_is_written(*progress):
        safe_point(*progress)
        daemon.halt.set()

    daemon.safe_point = sigterm_while_the_first_batch_is_written
    daemon.execute(due)  # stops at the next safe point: the first batch committed
    daemon.safe_point = safe_point
    daemon.halt.clear()

    daemon.catch_up()

    ingest, summarise = runs(engine, "ingest"), runs(engine, "summarise")
    assert [run.outcome for run in ingest] == ["ok"] and ingest[0].papers_new > 4
    assert [run.outcome for run in summarise] == ["interrupted", "ok"]
    assert (summarise[1].summaries_cached, summarise[1].summaries_made) == (4, ingest[0].papers_new - 4)
    clock.advance(minutes=30)
    daemon.catch_up()
    assert len(runs(engine, "summarise")) == 2, "nothing new was ingested, so nothing to summarise"


# --- Sources -----------------------------------------------------------------------------------------------


def test_a_source_failing_repeatedly_is_fetched_less_often_and_status_shows_it(write_config, tmp_path):
    config = make_config(write_config, f"""
[[sources]]
name = "good"
kind = "arxiv-rss"
url = "{FIXTURES / 'arxiv_rss.xml'}"

[[sources]]
name = "gone"
kind = "arxiv-rss"
url = "{tmp_path / 'vanished.xml'}"
""")
    engine = open_database(config.database_url)
    clock = FakeClock(datetime.now(UTC))
    daemon = active_daemon(config, engine, clock)
    for _ in range(3):
        result = daemon.execute(Due("ingest", "schedule", clock.now()))
        assert result.outcome == "partial" and "gone" in result.detail

    result = daemon.execute(Due("ingest", "schedule", clock.now()))

    assert result.outcome == "ok" and "gone backing off until" in result.detail
    with session_scope(engine) as session:
        fetched = session.scalars(select(FetchLog.source).order_by(FetchLog.id)).all()
    assert fetched.count("gone") == 3 and fetched.count("good") == 4
    [good, gone] = status_report(config, engine, clock.now())["sources"]
    assert gone["failures_in_a_row"] == 3 and "vanished.xml" in gone["last_error"]
    assert datetime.fromisoformat(gone["backing_off_until"]) > clock.now() + timedelta(hours=3)
    assert good["failures_in_a_row"] == 0 and good["backing_off_until"] is None
    clock.advance(hours=4, minutes=1)
    daemon.execute(Due("ingest", "schedule", clock.now()))
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).where(FetchLog.source == "gone")) == 4


def test_forced_ingest_that_fails_everywhere_exits_1_and_is_recorded(write_config, tmp_path):
    make_config(write_config, f'[[sources]]\nname = "gone"\nkind = "arxiv-rss"\nurl = "{tmp_path / "gone.xml"}"\n')
    result = CliRunner().invoke(app, ["run", "--once", "ingest"])
    assert result.exit_code == 1
    engine = open_database(load_config().database_url)
    [run] = runs(engine, "ingest")
    assert (run.trigger, run.outcome) == ("once", "failed") and "gone.xml" in run.detail
    assert store_lease_free(engine)


def test_a_job_argument_without_once_is_a_usage_error(write_config):
    make_config(write_config)
    result = CliRunner().invoke(app, ["run", "daily"])
    assert result.exit_code == 2 and "--once" in result.output


def store_lease_free(engine) -> bool:
    with session_scope(engine) as session:
        return store.current_lease(session).holder is None


# --- The lease ---------------------------------------------------------------------------------------------


def test_one_daemon_holds_the_lease_and_a_standby_takes_over_once_it_expires(write_config, caplog):
    config = make_config(write_config, "lease_seconds = 30\nheartbeat_seconds = 5\n")
    engine = open_database(config.database_url)
    clock = FakeClock(datetime(2026, 11, 10, 9, tzinfo=UTC))
    first, second = Daemon(config, engine, clock), Daemon(config, engine, clock)

    with caplog.at_level(logging.INFO, logger="digest.scheduler"):
        first.beat(None)
        second.beat(None)
    assert first.holding and not second.holding
    assert f"lease is held by {first.id}" in caplog.text
    report = status_report(config, engine, clock.now())["daemon"]
    assert report["active"]["holder"] == first.id and [s["id"] for s in report["standby"]] == [second.id]

    clock.advance(seconds=24)  # the holder was killed: no more renewals; the lease lasts 30 - 5 seconds
    second.beat(None)
    assert not second.holding
    clock.advance(seconds=2)
    second.beat(None)
    first.beat(None)  # it comes back: its renewal fails and it stands by
    assert second.holding and not first.holding and first.halt.is_set()

    second.shut_down(None)  # a clean stop releases the lease at once
    first.beat(None)
    assert first.holding


def test_an_unreachable_database_is_logged_and_retried_and_the_lease_given_up_only_once_it_expired(
        write_config, caplog):
    from sqlalchemy import create_engine

    config = make_config(write_config, "lease_seconds = 30\nheartbeat_seconds = 5\n")
    engine = open_database(config.database_url)
    clock = FakeClock(datetime(2026, 11, 10, 9, tzinfo=UTC))
    daemon = active_daemon(config, engine, clock)
    daemon.engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:9/none")  # nothing listens there

    with caplog.at_level(logging.WARNING, logger="digest.scheduler"):
        clock.advance(seconds=5)
        daemon.beat(None)
        assert daemon.holding and "database unavailable for the heartbeat" in caplog.text
        clock.advance(seconds=21)
        daemon.beat(None)
    assert not daemon.holding and daemon.halt.is_set()

    daemon.engine = engine  # the database is back
    daemon.beat(None)
    assert daemon.holding and not daemon.halt.is_set()


def test_a_new_holder_marks_runs_left_running_by_a_killed_daemon_interrupted(write_config):
    config = make_config(write_config)
    engine = open_database(config.database_url)
    clock = FakeClock(datetime(2026, 11, 10, 9, tzinfo=UTC))
    with session_scope(engine) as session:
        store.start_run(session, "daily", "schedule", "dead:1:abc", clock.now(), clock.now(), date(2026, 11, 10))
    active_daemon(config, engine, clock)
    [run] = runs(engine, "daily")
    assert run.outcome == "interrupted" and "stopped before it finished" in run.detail


# --- Status ------------------------------------------------------------------------------------------------


def test_status_explains_each_of_the_last_seven_days(write_config, smtp, tmp_path):
    config = tweak(make_config(write_config, smtp=smtp), "email", send_by_hours=10)
    engine = open_database(config.database_url)
    add_readers(engine, 1)
    day = lambda n, h=7, m=10: datetime(2026, 11, n, h, m, tzinfo=UTC)  # noqa: E731  (9 Nov 2026 is a Monday)
    clock = FakeClock(day(10))
    daemon = active_daemon(config, engine, clock)
    # Monday 9: no daemon yet. Tuesday 10: papers, sent.
    add_paper(engine, 0, day(10, 5))
    daemon.catch_up()
    # Wednesday 11: the only source fails.
    with session_scope(engine) as session:
        session.add(FetchLog(source="arxiv", url="https://example.org/rss", started_at=day(11, 4), status="error",
                             error="HTTP 503 from https://example.org/rss"))
    clock.moment = day(11)
    daemon.catch_up()
    # Thursday 12: papers about nothing the themes cover.
    add_paper(engine, 1, day(12, 5), title="Soil erosion", abstract="We measured soil erosion in ten river valleys.")
    clock.moment = day(12)
    daemon.catch_up()
    # Friday 13: the build fails.
    add_paper(engine, 2, day(13, 5))
    broken = tmp_path / "broken" / "email"
    broken.mkdir(parents=True)
    (broken / "edition.txt.j2").write_text("{{ missing }}", encoding="utf-8")
    daemon.config = tweak(config, "digest", templates_dir=broken.parent)
    clock.moment = day(13)
    daemon.catch_up()
    daemon.config = config
    # Saturday 14: nothing new. Sunday 15: the daemon was down until 18:00, past send_by_hours.
    clock.moment = day(14)
    daemon.catch_up()
    clock.moment = day(15, 18)
    daemon.catch_up()

    days = {d["date"][-2:]: d for d in status_report(config, engine, clock.now())["days"]}

    assert {n: d["why"] for n, d in days.items()} == {
        "15": "skipped-stale", "14": "no-new-papers", "13": "build-failed", "12": "no-theme-match",
        "11": "sources-failing", "10": "sent", "09": "daemon-not-running"}
    assert [n for n, d in days.items() if d["went_out"]] == ["10"]
    assert days["10"]["story"].startswith("sent to 1 reader(s)")
    assert "weekend" in days["14"]["story"]
    assert "edition.txt.j2" in days["13"]["story"]
    assert "arxiv (HTTP 503" in days["11"]["story"]
    assert "send_by_hours (10)" in days["15"]["story"]
    assert "07:00" in days["09"]["story"]


def test_status_text_and_json_through_the_cli(write_config, smtp):
    config = make_config(write_config, smtp=smtp)
    engine = open_database(config.database_url)
    add_paper(engine, 0, datetime.now(UTC))
    CliRunner().invoke(app, ["run", "--once", "daily"], catch_exceptions=False)

    text = CliRunner().invoke(app, ["status"])
    as_json = CliRunner().invoke(app, ["status", "--json"])

    assert text.exit_code == 0 and as_json.exit_code == 0
    report = json.loads(as_json.output)
    assert {job["job"] for job in report["jobs"]} == {"ingest", "summarise", "daily", "weekly", "send"}
    daily = next(job for job in report["jobs"] if job["job"] == "daily")
    assert daily["last_run"]["trigger"] == "once" and daily["last_run"]["outcome"] == "ok"
    assert len(report["days"]) == 7 and report["editions"][0]["status"] == "ready"
    assert "Daily edition, last 7 days:" in text.output and "none active" in text.output
