"""Shared fixtures. Every test runs with its config, database and outputs in its own temporary folder."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from digest.config import Config, load_config
from digest.store import get_engine, open_database

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = FIXTURES / "corpus" / "papers.jsonl"
POSTGRES_ADMIN_URL = os.environ.get("DIGEST_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

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
def write_config(tmp_path: Path):
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

    def install(entry_points: str, modules: dict[str, str] | None = None) -> None:
        info = site / "digest_test_plugin-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: digest-test-plugin\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(entry_points)
        for name, source in (modules or {}).items():
            (site / f"{name}.py").write_text(source)
        monkeypatch.syspath_prepend(str(site))

    return install


@pytest.fixture
def config(write_config) -> Config:
    return load_config(write_config())


@pytest.fixture
def engine(config: Config) -> Engine:
    """A migrated SQLite file in the test folder."""
    return open_database(config.database_url)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the local server, dropped after the test."""
    name = f"digest_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        get_engine(url).dispose()
        get_engine.cache_clear()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
