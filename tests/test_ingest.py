"""Ingest end to end: sources -> store, deduplicated and idempotent, with HTTP behaviour (conditional GET, retries,
redirects, timeouts, caps) checked against a real local HTTP server, and every bad input reported per source."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select, text

from digest import USER_AGENT
from digest.config import load_config
from digest.errors import ConfigError
from digest.models import FetchLog, Paper, Sighting
from digest.pipeline import ingest
from digest.store import open_database, session_scope
from digest.store.papers import fetch_history, papers_first_seen

FIXTURES = Path(__file__).parent / "fixtures"
FAST_INGEST = """
[ingest]
timeout_seconds = 0.5
retries = 1
backoff_seconds = 0.05
max_bytes = 200000
arxiv_api_interval_seconds = 0
"""


# --- A scripted local HTTP server ---------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    declare_length: bool = True


Script = Reply | Callable[[dict[str, str], dict[str, list[str]]], Reply]


class FeedServer:
    """Serves scripted replies per path on 127.0.0.1: each request takes the next reply of its path (the last one
    repeats); a reply may be a function of the request headers and query. Records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Script]] = {}
        self.requests: list[tuple[str, dict[str, str], dict[str, list[str]]]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def route(self, path: str, *replies: Script) -> str:
        self.routes[path] = list(replies)
        return self.url(path)

    def requests_to(self, path: str) -> list[tuple[dict[str, str], dict[str, list[str]]]]:
        return [(headers, query) for p, headers, query in self.requests if p == path]

    def next_reply(self, path: str, headers: dict[str, str], query: dict[str, list[str]]) -> Reply:
        self.requests.append((path, headers, query))
        script = self.routes.get(path) or [Reply(404, b"not found")]
        reply = script.pop(0) if len(script) > 1 else script[0]
        return reply(headers, query) if callable(reply) else reply

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                reply = server.next_reply(parts.path, dict(self.headers), parse_qs(parts.query))
                time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if reply.declare_length:
                        self.send_header("Content-Length", str(len(reply.body)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *_args) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    feed_server = FeedServer()
    yield feed_server
    feed_server.close()


def with_etag(body: bytes, etag: str, last_modified: str = "Mon, 10 Jun 2024 04:00:00 GMT") -> Script:
    """200 with validators, or 304 when the request carries the same ETag."""

    def reply(headers: dict[str, str], _query) -> Reply:
        if headers.get("If-None-Match") == etag:
            return Reply(304, headers={"ETag": etag})
        return Reply(200, body, {"ETag": etag, "Last-Modified": last_modified, "Content-Type": "application/rss+xml"})

    return reply


# --- Helpers ------------------------------------------------------------------------------------------------


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def source_toml(name: str, kind: str, url: str, **extra: object) -> str:
    lines = [f'[[sources]]\nname = "{name}"\nkind = "{kind}"\nurl = "{url}"']
    lines += [f"{key} = {value!r}".replace("'", '"') for key, value in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def setup(write_config):
    """Write a config with fast fetch limits and the given sources; return (config, engine)."""

    def make(*sources: str):
        config = load_config(write_config("\n".join(sources), base='[database]\nurl = "sqlite:///digest.db"\n' + FAST_INGEST))
        return config, open_database(config.database_url)

    return make


def local(name: str, kind: str, fixture: str, **extra: object) -> str:
    return source_toml(name, kind, str(FIXTURES / fixture), **extra)


ALL_KINDS = (
    local("api", "arxiv-api", "arxiv_api_page1.xml", query="cat:cs.CL"),
    local("rss", "arxiv-rss", "arxiv_rss.xml"),
    local("atom", "arxiv-rss", "arxiv_atom.xml"),
    local("hf", "hf-daily", "hf_daily.json"),
    source_toml("blog", "feed", (FIXTURES / "blog_atom.xml").as_uri()),
)


def results(report) -> dict[str, tuple]:
    return {r.source: (r.status, r.new, r.updated, r.invalid) for r in report.results}


def paper(engine, key: str) -> Paper:
    with session_scope(engine) as session:
        found = session.scalars(select(Paper).where(Paper.key == key)).one()
        found.sightings  # noqa: B018  (load before the session closes)
        return found


def count(engine, model) -> int:
    with session_scope(engine) as session:
        return session.scalar(select(func.count()).select_from(model))


# --- Every kind, dedup, replace, idempotence ----------------------------------------------------------------


def test_every_source_kind_is_stored_once_per_paper(setup):
    config, engine = setup(*ALL_KINDS)
    report = ingest(config, engine)
    assert results(report) == {
        "api": ("ok", 3, 0, 0),
        "rss": ("ok", 4, 2, 0),
        "atom": ("ok", 0, 0, 0),
        "hf": ("ok", 2, 0, 0),
        "blog": ("ok", 2, 0, 0),
    }
    assert not report.failed and report.new == 11
    assert count(engine, Paper) == 11
    shared = paper(engine, "arxiv:2407.01002")
    assert sorted(s.source for s in shared.sightings) == ["atom", "hf", "rss"]
    assert shared.upvotes is not None and shared.categories and shared.version == 1
    assert sorted(s.source for s in paper(engine, "arxiv:2407.01000").sightings) == ["atom", "blog", "rss"]


def test_replace_listing_updates_paper_without_announcing_it(setup):
    config, engine = setup(local("api", "arxiv-api", "arxiv_api_page1.xml", query="x"), local("rss", "arxiv-rss", "arxiv_rss.xml"))
    ingest(config, engine, ["api"])
    before = paper(engine, "arxiv:2407.01004")
    report = ingest(config, engine, ["rss"])
    after = paper(engine, "arxiv:2407.01004")
    assert results(report)["rss"] == ("ok", 4, 2, 0)
    assert (before.version, after.version) == (1, 2)
    assert after.first_seen_at == before.first_seen_at and after.announce_type is None
    assert after.updated_at is not None and after.last_seen_at > before.last_seen_at


def test_replace_of_an_unknown_paper_is_stored_as_a_replace(setup):
    config, engine = setup(local("rss", "arxiv-rss", "arxiv_rss.xml"))
    ingest(config, engine)
    assert paper(engine, "arxiv:2407.01004").announce_type == "replace"
    assert paper(engine, "arxiv:2407.01005").announce_type == "replace-cross"


def test_ingesting_again_stores_nothing_new(setup):
    config, engine = setup(*ALL_KINDS)
    ingest(config, engine)
    papers, sightings = count(engine, Paper), count(engine, Sighting)
    again = ingest(config, engine)
    assert all(r.new == 0 and r.updated == 0 for r in again.results)
    assert (count(engine, Paper), count(engine, Sighting)) == (papers, sightings)


def test_feed_entries_dedupe_on_normalised_title_against_other_feeds(setup):
    config, engine = setup(local("blog", "feed", "blog_atom.xml"), local("aggregator", "feed", "blog_rss.xml"))
    report = ingest(config, engine)
    assert results(report)["aggregator"] == ("ok", 1, 0, 0)
    experts = paper(engine, "url:lab.example.org/posts/scaling-experts")
    assert sorted(s.source for s in experts.sightings) == ["aggregator", "blog"]


def test_source_filters_drop_unwanted_announce_types(setup):
    config, engine = setup(local("rss", "arxiv-rss", "arxiv_rss.xml", announce_types=["new", "cross"]))
    ingest(config, engine)
    assert count(engine, Paper) == 4


def test_unknown_source_name_is_a_config_error(setup):
    config, engine = setup(local("rss", "arxiv-rss", "arxiv_rss.xml"))
    with pytest.raises(ConfigError, match="no source named 'nope'"):
        ingest(config, engine, ["nope"])


def test_progress_is_reported_per_source_stored(setup):
    config, engine = setup(local("rss", "arxiv-rss", "arxiv_rss.xml"), local("hf", "hf-daily", "hf_daily.json"))
    calls: list[tuple[int, int]] = []

    ingest(config, engine, on_progress=lambda done, total: calls.append((done, total)))

    assert calls == [(0, 2), (1, 2), (2, 2)]


def test_papers_first_seen_uses_the_ingest_time(setup):
    config, engine = setup(local("rss", "arxiv-rss", "arxiv_rss.xml"))
    start = datetime.now(timezone.utc)
    ingest(config, engine)
    with session_scope(engine) as session:
        assert len(papers_first_seen(session, start - timedelta(seconds=1), start + timedelta(hours=1))) == 6
        assert papers_first_seen(session, start - timedelta(days=2), start - timedelta(days=1)) == []


# --- HTTP behaviour -----------------------------------------------------------------------------------------


def test_conditional_get_makes_a_304_cost_nothing(setup, server):
    url = server.route("/rss", with_etag(fixture_bytes("arxiv_rss.xml"), '"v1"'))
    config, engine = setup(source_toml("rss", "arxiv-rss", url))
    first = ingest(config, engine)
    second = ingest(config, engine)
    assert results(first)["rss"] == ("ok", 6, 0, 0) and results(second)["rss"] == ("not-modified", 0, 0, 0)
    (first_request, _), (second_request, _) = server.requests_to("/rss")
    assert "If-None-Match" not in first_request and first_request["User-Agent"] == USER_AGENT
    assert second_request["If-None-Match"] == '"v1"'
    assert second_request["If-Modified-Since"] == "Mon, 10 Jun 2024 04:00:00 GMT"
    with session_scope(engine) as session:
        log = fetch_history(session, "rss")
    assert [(row.status, row.http_status, row.etag) for row in log] == [("ok", 200, '"v1"'), ("not-modified", 304, '"v1"')]
    third = ingest(config, engine)
    assert results(third)["rss"][0] == "not-modified"


def test_429_is_retried_after_the_time_the_server_asks(setup, server):
    url = server.route("/rss", Reply(429, headers={"Retry-After": "0"}), Reply(200, fixture_bytes("arxiv_rss.xml")))
    config, engine = setup(source_toml("rss", "arxiv-rss", url))
    assert results(ingest(config, engine))["rss"] == ("ok", 6, 0, 0)
    assert len(server.requests_to("/rss")) == 2


def test_server_errors_are_retried_then_reported(setup, server):
    url = server.route("/rss", Reply(500, b"oops"))
    config, engine = setup(source_toml("rss", "arxiv-rss", url))
    result = ingest(config, engine).results[0]
    assert result.failed and "HTTP 500" in result.error and "gave up after 2 attempts" in result.error
    assert len(server.requests_to("/rss")) == 2


def test_client_errors_fail_at_once(setup, server):
    url = server.route("/gone", Reply(404, b"no"))
    config, engine = setup(source_toml("rss", "arxiv-rss", url))
    result = ingest(config, engine).results[0]
    assert result.failed and result.error == f"{url}: HTTP 404 Not Found"
    assert len(server.requests_to("/gone")) == 1


def test_redirects_are_followed(setup, server):
    server.route("/feed", Reply(200, fixture_bytes("arxiv_rss.xml")))
    url = server.route("/old", Reply(301, headers={"Location": server.url("/feed")}))
    config, engine = setup(source_toml("rss", "arxiv-rss", url))
    assert results(ingest(config, engine))["rss"] == ("ok", 6, 0, 0)


def test_a_slow_server_times_out_with_a_clear_message(setup, server):
    url = server.route("/slow", Reply(200, fixture_bytes("arxiv_rss.xml"), delay=1.5))
    config, engine = setup(source_toml("rss", "arxiv-rss", url))
    result = ingest(config, engine).results[0]
    assert result.failed and "timed out after 0.5 s" in result.error


@pytest.mark.parametrize("declare_length", [True, False])
def test_oversized_responses_are_refused(setup, server, declare_length):
    body = fixture_bytes("arxiv_rss.xml") * 20
    url = server.route("/big", Reply(200, body, declare_length=declare_length))
    config, engine = setup(source_toml("rss", "arxiv-rss", url))
    result = ingest(config, engine).results[0]
    assert result.failed and "over the 200000-byte limit" in result.error
    assert count(engine, Paper) == 0


def test_an_html_page_instead_of_a_feed_is_reported(setup, server):
    url = server.route("/page", Reply(200, fixture_bytes("not_a_feed.html"), {"Content-Type": "text/html"}))
    config, engine = setup(source_toml("rss", "feed", url))
    result = ingest(config, engine).results[0]
    assert result.failed and result.error == "not a feed: the response is an HTML page"


def test_a_dead_url_is_reported_and_other_sources_still_run(setup):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config, engine = setup(
        source_toml("dead", "arxiv-rss", f"http://127.0.0.1:{port}/rss"), local("rss", "arxiv-rss", "arxiv_rss.xml")
    )
    report = ingest(config, engine)
    dead = report.results[0]
    assert dead.failed and "cannot connect" in dead.error and report.failures == [dead]
    assert results(report)["rss"] == ("ok", 6, 0, 0)


def test_arxiv_api_pages_through_results_politely(setup, server):
    pages = {"0": fixture_bytes("arxiv_api_page1.xml"), "3": fixture_bytes("arxiv_api_page2.xml")}
    url = server.route("/api/query", lambda _headers, query: Reply(200, pages[query["start"][0]]))
    config, engine = setup(source_toml("api", "arxiv-api", url, query="cat:cs.CL OR cat:cs.CV", page_size=3))
    assert results(ingest(config, engine))["api"] == ("ok", 6, 0, 0)
    queries = [query for _headers, query in server.requests_to("/api/query")]
    assert [(q["start"], q["max_results"]) for q in queries] == [(["0"], ["3"]), (["3"], ["3"])]
    search = queries[0]["search_query"][0]
    assert search.startswith("(cat:cs.CL OR cat:cs.CV) AND submittedDate:[") and search.endswith("2359]")


def test_an_arxiv_api_error_entry_fails_the_source(setup, server):
    url = server.route("/api/query", Reply(200, fixture_bytes("arxiv_api_error.xml")))
    config, engine = setup(source_toml("api", "arxiv-api", url, query="id:2407.0xyz"))
    result = ingest(config, engine).results[0]
    assert result.failed and result.error == "arXiv API error: incorrect id format for 2407.0xyz"


# --- Bad input and crash safety -----------------------------------------------------------------------------


def test_each_bad_input_is_reported_by_source_and_the_rest_is_stored(setup):
    config, engine = setup(
        local("good", "arxiv-rss", "arxiv_rss.xml"),
        local("truncated", "arxiv-rss", "truncated.xml"),
        local("bomb", "arxiv-rss", "entity_bomb.xml"),
        local("xxe", "feed", "external_entity.xml"),
        local("utf8", "arxiv-rss", "invalid_utf8.xml"),
        local("html", "feed", "not_a_feed.html"),
        local("missing", "arxiv-rss", "missing_fields.xml"),
        local("weekend", "arxiv-rss", "arxiv_rss_empty.xml"),
        local("feed-error", "arxiv-rss", "arxiv_feed_error.xml"),
        source_toml("no-file", "arxiv-rss", str(FIXTURES / "does-not-exist.xml")),
    )
    report = ingest(config, engine)
    by_source = {r.source: r for r in report.results}
    assert {name for name, r in by_source.items() if r.failed} == {
        "truncated", "bomb", "xxe", "utf8", "html", "feed-error", "no-file"
    }  # fmt: skip
    assert "malformed XML" in by_source["truncated"].error
    assert "declares XML entities" in by_source["bomb"].error and "declares XML entities" in by_source["xxe"].error
    assert by_source["utf8"].error.startswith("invalid UTF-8 at byte")
    assert by_source["html"].error == "not a feed: the response is an HTML page"
    assert by_source["feed-error"].error == "arXiv says: Feed error for query: cs.XX"
    assert "cannot read file" in by_source["no-file"].error
    assert (by_source["missing"].status, by_source["missing"].new, by_source["missing"].invalid) == ("partial", 1, 2)
    assert by_source["weekend"].status == "empty" and not by_source["weekend"].failed
    with session_scope(engine) as session:
        titles = list(session.scalars(select(Paper.title)))
        logged = {row.source: row.status for row in session.scalars(select(FetchLog))}
    assert not any("root:" in title or "lol" in title for title in titles)
    assert len(logged) == 10 and logged["bomb"] == "error" and logged["missing"] == "partial"


def test_a_broken_feed_keeps_its_readable_entries_but_not_its_etag(setup, server):
    url = server.route("/rss", with_etag(fixture_bytes("truncated.xml"), '"t1"'))
    config, engine = setup(source_toml("rss", "arxiv-rss", url))
    first = ingest(config, engine).results[0]
    assert first.failed and first.new == 2
    ingest(config, engine)
    assert all("If-None-Match" not in headers for headers, _ in server.requests_to("/rss"))
    with session_scope(engine) as session:
        assert [row.etag for row in fetch_history(session, "rss")] == [None, None]


@contextmanager
def inserts_failing(engine, table: str, message: str):
    """While inside, every insert into `table` fails with `message` (a trigger; SQLite's or PostgreSQL's)."""
    postgresql = engine.dialect.name == "postgresql"
    create = [
        f"CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{message}'; END $$",
        f"CREATE TRIGGER fail BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION fail()",
    ] if postgresql else [f"CREATE TRIGGER fail BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, '{message}'); END"]
    drop = [f"DROP TRIGGER fail ON {table}", "DROP FUNCTION fail()"] if postgresql else ["DROP TRIGGER fail"]
    with engine.begin() as connection:
        for statement in create:
            connection.execute(text(statement))
    try:
        yield
    finally:
        with engine.begin() as connection:
            for statement in drop:
                connection.execute(text(statement))


def test_a_crash_while_storing_leaves_neither_entries_nor_etag(setup, server):
    url = server.route("/rss", with_etag(fixture_bytes("arxiv_rss.xml"), '"c1"'))
    config, engine = setup(source_toml("rss", "arxiv-rss", url))
    with inserts_failing(engine, "sightings", "disk full"):  # the database fails after the batch's papers are written
        result = ingest(config, engine).results[0]
    assert result.failed and "disk full" in result.error
    assert count(engine, Paper) == 0
    assert results(ingest(config, engine))["rss"] == ("ok", 6, 0, 0)
    assert all("If-None-Match" not in headers for headers, _ in server.requests_to("/rss"))
    with session_scope(engine) as session:
        assert [(row.status, row.etag) for row in fetch_history(session, "rss")] == [("error", None), ("ok", '"c1"')]
