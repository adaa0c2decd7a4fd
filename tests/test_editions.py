"""Editions: which papers go in (period, replacements, caps, repeats), stable content hashes, rebuilds, empty
periods with their reasons, weekly editions, no database lock held while overviews are written, and the
`digest build|preview|archive` commands."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from functools import partial

import httpx
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from digest import editions, pipeline
from digest.cli import app
from digest.config import load_config
from digest.errors import RenderError, SummariserError
from digest.models import Delivery, Edition, FetchLog, Paper, Subscriber, ThemeAssignment
from digest.editions import edition_period
from digest.render import EmailLinks, edition_outputs
from digest.store import open_database, session_scope
from digest.store.subscribers import find_subscriber
from digest.summarise import Summariser, Task, grounding, summarise_papers
from digest.summarise.extractive import ExtractiveSummariser
from digest.web import CSRF_COOKIE, create_app
from conftest import BASE_CONFIG, CORPUS, FIXTURES

THEMES = """
[summariser]
backend = "extractive"

[assign]
other_bucket = false

[[themes]]
name = "Language models"
keywords = ["language model"]
max_papers = 3

[[themes]]
name = "Image and video generation"
keywords = ["diffusion"]
max_papers = 3
"""
MONDAY = date(2026, 11, 23)
MONDAY_9AM = datetime(2026, 11, 23, 9, tzinfo=timezone.utc)
RECORDS = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def config(write_config):
    return load_config(write_config(THEMES))


def add_paper(engine, number: int, seen: datetime = MONDAY_9AM, announce_type: str = "new", **themes: float) -> int:
    """A corpus paper first seen at `seen`, assigned to themes given as `Theme_name=score` (underscores for spaces)."""
    record = RECORDS[number]
    with session_scope(engine) as session:
        paper = Paper(
            key=f"arxiv:2611.{number:05d}", arxiv_id=f"2611.{number:05d}", title=record["title"],
            title_norm=record["title"].lower(), abstract=record["abstract"], authors=["A. Author", "B. Author"],
            abs_url=f"https://arxiv.org/abs/2611.{number:05d}", announce_type=announce_type,
            first_seen_at=seen, last_seen_at=seen, published_at=seen,
        )
        session.add(paper)
        session.flush()
        for theme, score in themes.items():
            session.add(ThemeAssignment(paper_id=paper.id, theme=theme.replace("_", " "), score=score,
                                        reason=f"score {score}", themes_hash="test"))
        return paper.id


def build(config, engine, period: str, day: date, rebuild: bool = False) -> Edition:
    """Build the period's edition from the papers as stored (no theming or summarising first)."""
    window = editions.edition_window(config, engine, period, day)
    return editions.build(config, engine, window, partial(edition_outputs, config), rebuild)


def summarise_all(config, engine) -> None:
    with session_scope(engine) as session:
        papers = list(session.query(Paper))
    summarise_papers(config, engine, papers)


def papers_by_theme(edition: Edition) -> dict[str, list[int]]:
    return {theme["name"]: [paper["paper_id"] for paper in theme["papers"]] for theme in edition.content["themes"]}


def test_daily_edition_takes_papers_first_seen_that_day_in_the_configured_timezone(write_config):
    config = load_config(write_config(THEMES, base=BASE_CONFIG.replace('timezone = "UTC"', 'timezone = "Europe/Berlin"')))
    engine = open_database(config.database_url)
    just_after_midnight = add_paper(engine, 0, datetime(2026, 11, 22, 23, 30, tzinfo=timezone.utc), Language_models=1.0)
    add_paper(engine, 1, datetime(2026, 11, 23, 23, 30, tzinfo=timezone.utc), Language_models=1.0)  # Tuesday in Berlin
    add_paper(engine, 2, datetime(2026, 11, 22, 22, 30, tzinfo=timezone.utc), Language_models=1.0)  # Sunday in Berlin

    edition = build(config, engine, "daily", MONDAY)

    assert edition.status == "ready"
    assert papers_by_theme(edition) == {"Language models": [just_after_midnight]}


def test_replacement_listings_are_left_out_unless_configured(config, engine, write_config):
    new = add_paper(engine, 0, Language_models=1.0)
    replaced = add_paper(engine, 1, announce_type="replace", Language_models=2.0)

    assert papers_by_theme(build(config, engine, "daily", MONDAY)) == {"Language models": [new]}

    with_replacements = load_config(write_config(THEMES.replace("[assign]", "[edition]\ninclude_replacements = true\n\n[assign]")))
    edition = build(with_replacements, engine, "daily", MONDAY)
    assert papers_by_theme(edition) == {"Language models": [replaced, new]}


def test_each_theme_keeps_its_best_ranked_papers_up_to_max_papers(config, engine):
    ids = [add_paper(engine, number, Language_models=score) for number, score in enumerate([0.5, 0.9, 0.1, 0.7, 0.3])]

    edition = build(config, engine, "daily", MONDAY)

    assert papers_by_theme(edition) == {"Language models": [ids[1], ids[3], ids[0]]}
    scores = [paper["score"] for paper in edition.content["themes"][0]["papers"]]
    assert scores == sorted(scores, reverse=True)


def test_a_paper_appears_once_in_its_best_theme_unless_repeats_are_allowed(config, engine, write_config):
    both = add_paper(engine, 0, Language_models=0.4, Image_and_video_generation=0.9)
    text_only = add_paper(engine, 1, Language_models=0.5)

    edition = build(config, engine, "daily", MONDAY)
    assert papers_by_theme(edition) == {"Language models": [text_only], "Image and video generation": [both]}

    repeats = load_config(write_config(THEMES.replace("[assign]", "[edition]\nallow_repeats = true\n\n[assign]")))
    edition = build(repeats, engine, "daily", MONDAY, rebuild=True)
    assert papers_by_theme(edition) == {"Language models": [text_only, both], "Image and video generation": [both]}


def test_a_paper_moves_to_its_next_best_theme_when_its_best_is_full(config, engine):
    for number in range(3):
        add_paper(engine, number, Image_and_video_generation=0.9)
    overflow = add_paper(engine, 3, Image_and_video_generation=0.8, Language_models=0.2)

    edition = build(config, engine, "daily", MONDAY)

    assert papers_by_theme(edition)["Language models"] == [overflow]
    assert overflow not in papers_by_theme(edition)["Image and video generation"]


def test_edition_snapshot_holds_tldrs_overviews_and_links(config, engine):
    first = add_paper(engine, 0, Language_models=0.9)
    second = add_paper(engine, 1, Language_models=0.5)
    summarise_all(config, engine)

    edition = build(config, engine, "daily", MONDAY)

    theme = edition.content["themes"][0]
    assert [paper["paper_id"] for paper in theme["papers"]] == [first, second]
    assert all(paper["tldr"] and paper["title"] and paper["abs_url"] for paper in theme["papers"])
    assert theme["overview"]["text"] and set(theme["overview"]["cited"]) <= {first, second}
    assert edition.title == "Test digest: Monday 23 November 2026"
    assert RECORDS[0]["title"][:30] in edition.html and RECORDS[0]["title"][:30] in edition.text
    assert edition.markdown.startswith("# Test digest")


def test_building_twice_gives_the_same_content_and_keeps_the_stored_edition(config, engine):
    add_paper(engine, 0, Language_models=0.9)
    summarise_all(config, engine)

    first = build(config, engine, "daily", MONDAY)
    again = build(config, engine, "daily", MONDAY)

    assert again.id == first.id
    assert again.content_hash == first.content_hash
    assert again.built_at == first.built_at


def test_new_papers_change_the_content_hash_and_rebuild_forces_a_fresh_render(config, engine):
    add_paper(engine, 0, Language_models=0.9)
    first = build(config, engine, "daily", MONDAY)

    forced = build(config, engine, "daily", MONDAY, rebuild=True)
    assert forced.content_hash == first.content_hash and forced.built_at > first.built_at

    add_paper(engine, 1, Language_models=0.5)
    changed = build(config, engine, "daily", MONDAY)
    assert changed.id == first.id and changed.content_hash != first.content_hash
    assert len(changed.content["themes"][0]["papers"]) == 2


@pytest.mark.parametrize(
    ("setup", "day", "reason"),
    [
        ("nothing", date(2026, 11, 22), "weekend"),
        ("nothing", MONDAY, "no source was fetched"),
        ("failed fetch", MONDAY, "source failures: arxiv-cs (HTTP 503 Service Unavailable)"),
        ("empty fetch", MONDAY, "sources reported empty or unchanged feeds"),
        ("unmatched paper", MONDAY, "no matches: 1 new paper(s)"),
        ("replacement only", MONDAY, "only new versions of older papers"),
    ],
)
def test_an_empty_period_says_why_and_has_no_email(config, engine, setup, day, reason):
    with session_scope(engine) as session:
        if setup == "failed fetch":
            session.add(FetchLog(source="arxiv-cs", url="https://rss.arxiv.org", started_at=MONDAY_9AM, status="error",
                                 error="HTTP 503 Service Unavailable"))
            session.add(FetchLog(source="hf-daily", url="https://hf.co", started_at=MONDAY_9AM, status="empty"))
        if setup == "empty fetch":
            session.add(FetchLog(source="arxiv-cs", url="https://rss.arxiv.org", started_at=MONDAY_9AM, status="empty"))
    if setup == "unmatched paper":
        add_paper(engine, 0)
    if setup == "replacement only":
        add_paper(engine, 0, announce_type="replace", Language_models=1.0)

    edition = build(config, engine, "daily", day)

    assert edition.status == "empty"
    assert reason in edition.empty_reason
    assert edition.html == edition.text == edition.markdown == ""


def test_weekly_edition_covers_the_seven_days_before_the_weekly_day(config, engine):
    assert edition_period(config, "weekly", date(2026, 11, 25)).start == date(2026, 11, 16)
    assert edition_period(config, "weekly", date(2026, 11, 25)).end == date(2026, 11, 22)
    assert edition_period(config, "weekly", MONDAY).start == date(2026, 11, 16)
    tuesday = add_paper(engine, 0, MONDAY_9AM - timedelta(days=6), Language_models=0.5)
    sunday = add_paper(engine, 1, MONDAY_9AM - timedelta(days=1), Language_models=0.9)
    add_paper(engine, 2, MONDAY_9AM, Language_models=1.0)  # this Monday: next week's edition
    summarise_all(config, engine)

    weekly = build(config, engine, "weekly", date(2026, 11, 25))
    daily = build(config, engine, "daily", date(2026, 11, 22))

    assert (weekly.start_date, weekly.end_date) == (date(2026, 11, 16), date(2026, 11, 22))
    assert papers_by_theme(weekly) == {"Language models": [sunday, tuesday]}
    assert weekly.title == "Test digest: week of 16–22 November 2026"
    assert weekly.content["themes"][0]["overview"] != daily.content["themes"][0]["overview"]


def test_build_edition_themes_and_summarises_new_papers_first(config, engine, tmp_path):
    """The whole pipeline: real theme assignment (embeddings) and extractive TL;DRs, then the edition and the
    archive page its emails link to."""
    with session_scope(engine) as session:
        for number in range(6):
            record = RECORDS[number]
            session.add(Paper(key=f"arxiv:2611.{number:05d}", title=record["title"], title_norm=record["title"].lower(),
                              abstract=record["abstract"], first_seen_at=MONDAY_9AM, announce_type="new"))

    edition = pipeline.build_edition(config, engine, "daily", MONDAY)

    assert edition.status == "ready"
    papers = [paper for theme in edition.content["themes"] for paper in theme["papers"]]
    assert papers and all(paper["tldr"] for paper in papers)
    assert (tmp_path / "digest-output" / "archive" / "daily-2026-11-23.html").exists()


def test_edition_renderer_is_found_by_id(config, engine):
    add_paper(engine, 0, Language_models=0.9)
    edition = build(config, engine, "daily", MONDAY)
    links = EmailLinks("https://x.test/web", "https://x.test/prefs", "https://x.test/unsub?t=1&u=2")

    email = pipeline.edition_renderer(config, engine, edition.id).email(None, links)

    assert "https://x.test/unsub?t=1&amp;u=2" in email.html and "https://x.test/unsub?t=1&u=2" in email.text
    with pytest.raises(RenderError, match="no edition with id 999"):
        pipeline.edition_renderer(config, engine, 999)


def test_cli_build_writes_the_files_and_prints_their_paths(config, engine, tmp_path):
    add_paper(engine, 0, Language_models=0.9)
    runner = CliRunner()

    result = runner.invoke(app, ["build", "--period", "daily", "--date", "2026-11-23", "--out", str(tmp_path / "out")])

    assert result.exit_code == 0, result.output
    paths = result.stdout.split()
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["daily-2026-11-23.html", "daily-2026-11-23.txt", "daily-2026-11-23.md"]
    assert RECORDS[0]["title"][:30] in (tmp_path / "out" / "daily-2026-11-23.txt").read_text()

    only_md = runner.invoke(app, ["build", "--date", "2026-11-23", "--format", "md", "--rebuild", "--out", str(tmp_path / "md")])
    assert only_md.stdout.split() == [str(tmp_path / "md" / "daily-2026-11-23.md")]


def test_cli_build_of_an_empty_day_prints_the_reason_and_writes_nothing(config, engine, tmp_path):
    result = CliRunner().invoke(app, ["build", "--date", "2026-11-22", "--out", str(tmp_path / "out")])

    assert result.exit_code == 0
    assert result.stdout == ""
    assert "weekend" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_rejects_a_bad_date(config, engine):
    result = CliRunner().invoke(app, ["build", "--date", "23/11/2026"])

    assert result.exit_code == 2
    assert "not a date like 2026-11-23" in result.output


def test_cli_editions_lists_each_edition_with_its_status_and_delivery_tallies(config, engine):
    add_paper(engine, 0, Language_models=0.9)
    ready = build(config, engine, "daily", MONDAY)
    empty = build(config, engine, "daily", date(2026, 11, 22))
    statuses = ["pending", "sending", "sent", "sent", "failed", "skipped"]
    with session_scope(engine) as session:
        for number, status in enumerate(statuses):
            subscriber = Subscriber(email=f"reader{number}@example.org", status="confirmed")
            session.add(subscriber)
            session.flush()
            session.add(Delivery(edition_id=ready.id, subscriber_id=subscriber.id, message_id=f"<{number}@test>",
                                 status=status))
    runner = CliRunner()

    listed = runner.invoke(app, ["editions", "--json"])
    plain = runner.invoke(app, ["editions"])

    assert listed.exit_code == 0, listed.output
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["id"], r["period"], r["start"], r["end"], r["status"], r["papers"]) for r in records] == [
        (ready.id, "daily", "2026-11-23", "2026-11-23", "ready", 1),
        (empty.id, "daily", "2026-11-22", "2026-11-22", "empty", 0),
    ]
    assert records[0]["deliveries"] == {"queued": 2, "sent": 2, "failed": 1, "skipped": 1}
    assert records[1]["deliveries"] == {"queued": 0, "sent": 0, "failed": 0, "skipped": 0}
    assert "weekend" in records[1]["empty_reason"] and records[0]["built_at"].startswith(str(ready.built_at.date()))
    lines = [line.split("\t") for line in plain.stdout.splitlines()]
    assert lines[0][:5] == [str(ready.id), "daily", "2026-11-23", "ready", "1 paper"]
    assert lines[0][6] == "2 queued, 2 sent, 1 failed, 1 skipped"
    assert lines[1][3].startswith("empty: nothing new: weekend") and lines[1][6] == "no deliveries"


def test_cli_preview_without_serving_writes_the_newest_edition_with_papers(config, engine, tmp_path):
    add_paper(engine, 0, Language_models=0.9)
    build(config, engine, "daily", MONDAY)

    result = CliRunner().invoke(app, ["preview", "--date", "2026-11-24", "--no-serve"])

    assert result.exit_code == 0, result.output
    path = result.stdout.strip()
    assert path.endswith("preview/daily-2026-11-23.html")
    assert RECORDS[0]["title"][:30] in open(path, encoding="utf-8").read()


def test_cli_archive_writes_index_pages_and_feeds(config, engine, tmp_path):
    add_paper(engine, 0, Language_models=0.9)
    build(config, engine, "daily", MONDAY)

    result = CliRunner().invoke(app, ["archive", "--out", str(tmp_path / "site")])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "site" / "index.html")
    assert {p.name for p in (tmp_path / "site").iterdir()} == {"index.html", "daily-2026-11-23.html", "feed.xml", "feed.json"}


def test_papers_seen_after_yesterdays_edition_was_built_go_into_todays(config, engine):
    early = add_paper(engine, 0, datetime(2026, 11, 22, 6, tzinfo=timezone.utc), Language_models=0.9)
    sunday = build(config, engine, "daily", date(2026, 11, 22))
    with session_scope(engine) as session:  # as if the scheduler had built it on Sunday at 07:00
        session.get(Edition, sunday.id).built_at = datetime(2026, 11, 22, 7, tzinfo=timezone.utc)
    late = add_paper(engine, 1, datetime(2026, 11, 22, 20, tzinfo=timezone.utc), Language_models=0.5)
    monday = add_paper(engine, 2, MONDAY_9AM, Language_models=0.7)

    edition = build(config, engine, "daily", MONDAY)

    assert papers_by_theme(sunday) == {"Language models": [early]}
    assert papers_by_theme(edition) == {"Language models": [monday, late]}


def test_cli_preview_serves_the_edition_on_localhost(config, engine):
    add_paper(engine, 0, Language_models=0.9)
    build(config, engine, "daily", MONDAY)
    command = [sys.executable, "-m", "digest", "preview", "--date", "2026-11-24", "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = server.stdout.readline().strip()
        response = httpx.get(url, timeout=10)
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert url.startswith("http://127.0.0.1:") and url.endswith("/daily-2026-11-23.html")
    assert response.status_code == 200 and RECORDS[0]["title"][:30] in response.text


class HeldSummariser(Summariser):
    """Writes extractive summaries, but holds every overview until the test releases it (at most 10 s): for as
    long as it waits, an edition's overviews are being generated. Installed as the backend `held-for-test`."""

    generating = threading.Event()
    release = threading.Event()

    def summarise(self, tasks: list[Task], strict: bool = False) -> list[str]:
        if any(task.kind == "overview" for task in tasks):
            HeldSummariser.generating.set()
            HeldSummariser.release.wait(timeout=10)
        return ExtractiveSummariser(self.settings, self.config).summarise(tasks, strict)


def test_sign_ups_and_ingest_go_through_while_overviews_are_written(write_config, secret, install_plugin):
    """No model work inside a write transaction: on SQLite every transaction takes the write lock, so a build
    that generated overviews inside one would hold the subscribe POST and the ingest commit until it finished."""
    source = f'[[sources]]\nname = "rss"\nkind = "arxiv-rss"\nurl = "{FIXTURES / "arxiv_rss.xml"}"\n'
    install_plugin(f"[digest.summarisers]\nheld-for-test = {__name__}:HeldSummariser\n")
    config = load_config(write_config(THEMES.replace('"extractive"', '"held-for-test"') + source))
    engine = open_database(config.database_url)
    add_paper(engine, 0, Language_models=0.9)
    add_paper(engine, 1, Language_models=0.8)  # a theme of one paper gets no overview
    HeldSummariser.generating.clear()
    HeldSummariser.release.clear()
    built: list[Edition] = []
    builder = threading.Thread(target=lambda: built.append(build(config, engine, "daily", MONDAY)))
    builder.start()
    try:
        assert HeldSummariser.generating.wait(timeout=30)
        client = TestClient(create_app(config))
        token = client.get("/").cookies[CSRF_COOKIE]
        signed_up = client.post("/subscribe", data={"email": "ada@example.org", "csrf": token, "frequency": "daily"})
        ingested = pipeline.ingest(config, engine)
        still_generating = builder.is_alive()
    finally:
        HeldSummariser.release.set()
        builder.join(timeout=30)

    assert still_generating
    assert signed_up.status_code == 200 and ingested.results[0].new == 6
    with session_scope(engine) as session:
        assert find_subscriber(session, "ada@example.org").status == "pending"
    assert built[0].status == "ready" and built[0].content["themes"][0]["overview"]["text"]


class CopyingSummariser(Summariser):
    """Writes extractive TL;DRs and overviews that glue their papers' TL;DRs together, as a small model often
    does. Installed as the backend `copying-for-test`."""

    def summarise(self, tasks: list[Task], strict: bool = False) -> list[str]:
        return [
            " ".join(item.text for item in task.items[:3]) if task.kind == "overview"
            else ExtractiveSummariser(self.settings, self.config).summarise([task])[0]
            for task in tasks
        ]


@pytest.mark.parametrize("backend", ["extractive", "copying-for-test"])
def test_no_overview_repeats_a_tldr_shown_in_its_edition(write_config, install_plugin, backend):
    install_plugin(f"[digest.summarisers]\ncopying-for-test = {__name__}:CopyingSummariser\n")
    config = load_config(write_config(THEMES.replace('"extractive"', f'"{backend}"')))
    engine = open_database(config.database_url)
    for number in range(8):
        add_paper(engine, number, Image_and_video_generation=0.9 - number / 10, Language_models=0.5)
    summarise_all(config, engine)

    edition = build(config, engine, "daily", MONDAY)

    shown = [paper["tldr"] for theme in edition.content["themes"] for paper in theme["papers"]]
    overviews = [theme["overview"] for theme in edition.content["themes"]]
    assert all(overview and overview["method"] == "structured" for overview in overviews)
    for overview in overviews:
        assert grounding.repeated_sentences(overview["text"], shown) == []
        assert overview["text"].startswith("3 papers")


class PickySummariser(Summariser):
    """Writes extractive summaries, records the overview themes of each call, and cannot write an overview of
    "Language models" (a server error, say). Installed as the backend `picky-for-test`."""

    calls: list[list[str]] = []

    def summarise(self, tasks: list[Task], strict: bool = False) -> list[str]:
        themes = [task.title for task in tasks if task.kind == "overview"]
        if themes:
            PickySummariser.calls.append(themes)
        if "Language models" in themes:
            raise SummariserError("the server could not answer")
        return ExtractiveSummariser(self.settings, self.config).summarise(tasks, strict)


def test_overviews_are_written_together_and_a_failing_theme_alone_goes_without(write_config, install_plugin):
    """An edition's overviews are generated in one call (a batch: 2.2x faster than one by one on a CPU); when that
    call fails, each theme is asked on its own, so one theme's failure costs only its own overview."""
    install_plugin(f"[digest.summarisers]\npicky-for-test = {__name__}:PickySummariser\n")
    config = load_config(write_config(THEMES.replace('"extractive"', '"picky-for-test"')))
    engine = open_database(config.database_url)
    for number in range(4):
        add_paper(engine, number, Image_and_video_generation=0.9 - number / 10, Language_models=0.5)
    add_paper(engine, 4, Language_models=0.9)
    add_paper(engine, 5, Language_models=0.8)
    PickySummariser.calls.clear()

    edition = build(config, engine, "daily", MONDAY)

    first, *alone = PickySummariser.calls
    assert sorted(first) == ["Image and video generation", "Language models"]
    assert alone and all(len(call) == 1 for call in alone)
    overviews = {theme["name"]: theme["overview"] for theme in edition.content["themes"]}
    assert overviews["Language models"] is None
    assert overviews["Image and video generation"]["text"]
