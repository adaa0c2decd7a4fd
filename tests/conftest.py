"""Shared fixtures. Every test runs with its config, database and outputs in its own temporary folder, and every
test that writes a config runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from digest.config import Config, load_config
from digest.deliver.transports import TRANSPORTS
from digest.models import Base
from digest.store import get_engine, hide_password, open_database
from digest.summarise.base import SUMMARISERS

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = FIXTURES / "corpus" / "papers.jsonl"
POSTGRES_ADMIN_URL = os.environ.get("DIGEST_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
DATABASES = ("sqlite", "postgresql")

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying to reach Google's hosts from this offline machine.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

BASE_CONFIG = """
[digest]
title = "Test digest"
timezone = "UTC"
base_url = "http://digest.test"
postal_address = "Test Lab, 1 Test Street"

[database]
url = "sqlite:///digest.db"

[ingest]
timeout_seconds = 5
retries = 1
arxiv_api_interval_seconds = 0
"""


@pytest.fixture(autouse=True)
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point config, database and outputs at this test's folder; nothing leaks between tests."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)
    monkeypatch.setenv("DIGEST_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    get_engine.cache_clear()
    return tmp_path


@pytest.fixture(scope="session")
def browser():
    """Real headless Chromium (Debian's package), driven by Playwright, shared by the tests that look at pages."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> str:
    """One converted-model cache for the whole test session (empty at first, as on a fresh machine)."""
    return str(tmp_path_factory.mktemp("model-cache"))


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """The signing secret for subscription links, set in the environment as `digest serve` expects."""
    monkeypatch.setenv("DIGEST_SECRET", "test-secret-for-links")
    return "test-secret-for-links"


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on loopback that records what it receives."""
    from smtp_server import SmtpServer

    with SmtpServer() as server:
        yield server


@pytest.fixture
def write_config(tmp_path: Path, database: str):
    """Write `config.toml` in the test folder from the base settings plus extra TOML; return its path."""

    def write(extra: str = "", base: str = BASE_CONFIG) -> Path:
        path = tmp_path / "config.toml"
        path.write_text(base + "\n" + extra, encoding="utf-8")
        return path

    return write


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install a package for this test the way pip would, as far as entry points can tell: its modules and a
    dist-info folder declaring `entry_points` (the text of an entry_points.txt), in a folder on sys.path."""
    site = tmp_path / "site"
    installed: set[str] = set()

    def install(entry_points: str, modules: dict[str, str] | None = None) -> None:
        info = site / "digest_test_plugin-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: digest-test-plugin\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(entry_points)
        for name, source in (modules or {}).items():
            (site / f"{name}.py").write_text(source)
            installed.add(name)
        monkeypatch.syspath_prepend(str(site))

    yield install
    # Uninstalled again: the next test imports the plugin afresh, with none of this one's state.
    for name in installed:
        sys.modules.pop(name, None)
    for registry in (SUMMARISERS, TRANSPORTS):
        for key, backend in list(registry.loaded.items()):
            if backend.__module__ in installed:
                del registry.loaded[key]


@pytest.fixture
def config(write_config) -> Config:
    return load_config(write_config())


@pytest.fixture
def engine(config: Config) -> Engine:
    """The test's migrated database (a SQLite file in the test folder, or this run's PostgreSQL database)."""
    return open_database(config.database_url)


# --- Both databases -----------------------------------------------------------------------------------------
#
# Every test that writes a config (`write_config`, and so `config` and `engine`) runs twice: on a SQLite file
# in its folder and on PostgreSQL (DIGEST_DATABASE_URL set, so the CLI, the web app and subprocesses all use it).
# A test that never opens the database is marked `no_database` and runs once; behaviour that only one database
# has is marked `only_on("sqlite")` or `only_on("postgresql")`.


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_database: the test never opens the database, so it runs once")
    config.addinivalue_line("markers", "only_on(name): run only on `sqlite` or only on `postgresql`")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database" not in metafunc.fixturenames or metafunc.definition.get_closest_marker("no_database"):
        return
    only = metafunc.definition.get_closest_marker("only_on")
    metafunc.parametrize("database", only.args if only else DATABASES, indirect=True)


@pytest.fixture
def database(request: pytest.FixtureRequest, isolated_state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Which database this test runs on: `sqlite` (the config's file in the test folder) or `postgresql` (this
    run's database, emptied first, named by DIGEST_DATABASE_URL)."""
    kind = getattr(request, "param", "sqlite")
    if kind != "postgresql":
        yield kind
        return
    url = request.getfixturevalue("postgres_run_database")
    empty_postgres_database(url)
    monkeypatch.setenv("DIGEST_DATABASE_URL", url)
    yield kind
    get_engine(url).dispose()


@pytest.fixture(scope="session")
def postgres_run_database() -> Iterator[str]:
    """This test run's own PostgreSQL database, migrated once and dropped at the end (runs never share one)."""
    with fresh_postgres_database("run") as url:
        open_database(url)
        get_engine(url).dispose()
        yield url


def empty_postgres_database(url: str) -> None:
    """Delete every row and restart the id sequences, after closing whatever connections earlier tests left."""
    name = make_url(url).database
    with admin_engine().connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@lru_cache(maxsize=1)
def admin_engine() -> Engine:
    return create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)


@contextmanager
def fresh_postgres_database(purpose: str) -> Iterator[str]:
    """A new, empty PostgreSQL database with a unique name, dropped on leaving."""
    name = f"digest_test_{purpose}_{uuid.uuid4().hex[:12]}"
    try:
        with admin_engine().connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        pytest.fail(f"the tests need PostgreSQL at {hide_password(POSTGRES_ADMIN_URL)} (set DIGEST_TEST_POSTGRES to "
                    f"another server's admin URL): {exc.orig}", pytrace=False)
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with admin_engine().connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database of the test's own (for migrations and `db copy`), dropped after it."""
    with fresh_postgres_database("empty") as url:
        yield url


@pytest.fixture
def corpus_edition():
    """A factory for a ready, in-memory daily Edition (no database) made of real corpus papers:
    `corpus_edition(themes=3, per_theme=4, first=0)` (up to 10 distinct theme names); TL;DRs are each
    abstract's first sentence."""
    import json
    from datetime import date, datetime, timezone

    from digest.models import Edition

    records = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    names = ["Language models", "Image and video generation", "Agents", "Robotics", "Speech and audio",
             "Reinforcement learning", "Efficient inference", "Evaluation and benchmarks", "Multimodal models", "Other"]

    def paper(number: int) -> dict:
        record = records[number % len(records)]
        arxiv_id = f"2611.{number:05d}"
        return {
            "paper_id": number + 1,
            "score": round(1.0 - number / 1000, 4),
            "reason": "matched keywords: diffusion; similarity 0.62",
            "title": record["title"],
            "authors": ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov"][: number % 6],
            "abs_url": f"https://arxiv.org/abs/{arxiv_id}",
            "pdf_url": f"https://arxiv.org/pdf/{arxiv_id}",
            "code_url": "https://github.com/example/code" if number % 3 == 0 else None,
            "github_stars": 1234 if number % 3 == 0 else None,
            "hf_url": f"https://huggingface.co/papers/{arxiv_id}" if number % 2 == 0 else None,
            "upvotes": 42 if number % 2 == 0 else None,
            "tldr": record["abstract"].split(". ")[0].rstrip(".") + ".",
        }

    def make(themes: int = 3, per_theme: int = 4, first: int = 0, edition_id: int = 1) -> Edition:
        theme_list = []
        for index in range(themes):
            papers = [paper(first + index * per_theme + offset) for offset in range(per_theme)]
            overview = {"text": f"This theme's papers: {papers[0]['tldr']}", "method": "extractive",
                        "cited": [papers[0]["paper_id"]]}
            theme_list.append({"name": names[index % len(names)], "overview": overview, "papers": papers})
        return Edition(
            id=edition_id, period="daily", start_date=date(2026, 11, 23), end_date=date(2026, 11, 23),
            title="Test digest: Monday 23 November 2026", status="ready", empty_reason=None,
            content={"period": "daily", "start": "2026-11-23", "end": "2026-11-23", "themes": theme_list},
            content_hash="", built_at=datetime(2026, 11, 23, 7, tzinfo=timezone.utc),
        )

    return make
