"""The demo's set-up: a working folder with a config whose sources are the sample feeds shipped in
`digest/samples/`, a fresh SQLite database, and two sample readers. `digest demo` (in `digest.cli.demo`) then
runs each stage on it in turn and shows what it did."""

from __future__ import annotations

import os
import secrets
import shutil
from importlib.resources import files
from pathlib import Path

from sqlalchemy import Engine

from digest.config import Config, load_config
from digest.store import get_engine, open_database, session_scope
from digest.store.subscribers import add_subscriber

SAMPLES = Path(str(files("digest") / "samples"))
DEMO_CONFIG = """# Written by `digest demo`: the sample feeds shipped with digest, read from disk.
[digest]
title = "Demo research digest"

[database]
url = "sqlite:///demo.db"

[[sources]]
name = "arxiv-api"
kind = "arxiv-api"
url = "{samples}/arxiv-api.xml"
query = "cat:cs.CL OR cat:cs.CV"

[[sources]]
name = "arxiv-rss"
kind = "arxiv-rss"
url = "{samples}/arxiv-rss.xml"

[[sources]]
name = "hf-daily"
kind = "hf-daily"
url = "{samples}/hf-daily.json"

[[themes]]
name = "Controllable image and video generation"
description = "Diffusion models that generate or edit images, video, 3D scenes or motion under user control."
keywords = ["diffusion", "ControlNet", "text-to-image", "image editing", "video generation", "motion generation"]
max_papers = 6

[[themes]]
name = "Prompting and efficient fine-tuning"
description = "Prompt engineering, prompt tuning and parameter-efficient fine-tuning of pretrained models."
keywords = ["prompt tuning", "prompt learning", "parameter-efficient", "PEFT", "prompting"]
max_papers = 6

[[themes]]
name = "Language model pretraining"
description = "How large language models are pretrained and continually pretrained: data, objectives, forgetting."
keywords = ["pretraining", "pre-training", "continual pre-training", "catastrophic forgetting"]
max_papers = 6

[assign]
# With the extractive summariser the demo runs no model at all: themes go by keywords alone.
similarity = {similarity}

[summariser]
backend = "{backend}"

[web]
secret_env = "DIGEST_DEMO_SECRET"

[email]
transport = "file"
outbox_dir = "outbox"
"""
DEMO_READERS = {
    "ada@example.org": [],
    "grace@example.org": ["Controllable image and video generation"],
}


def prepare_demo(workdir: Path, backend: str = "transformers") -> tuple[Config, Engine]:
    """Set up `workdir` from scratch for a demo with this summariser backend: its config and a migrated, empty
    database. The signing secret for the readers' links is made up if none is set."""
    config = write_demo_config(workdir, backend)
    os.environ.setdefault(config.web.secret_env, secrets.token_hex(16))
    return config, open_database(demo_database_url(workdir))


def write_demo_config(workdir: Path, backend: str) -> Config:
    """A config in `workdir` whose sources are the packaged samples, with nothing left from a past run."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.toml"
    similarity = "false" if backend == "extractive" else "true"
    text = DEMO_CONFIG.format(samples=SAMPLES.as_posix(), backend=backend, similarity=similarity)
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    get_engine(demo_database_url(workdir)).dispose()  # a past run in this process may hold the old file open
    for name in ("demo.db", "demo.db-wal", "demo.db-shm"):
        (workdir / name).unlink(missing_ok=True)
    for folder in ("digest-output", "outbox"):
        shutil.rmtree(workdir / folder, ignore_errors=True)
    return config


def demo_database_url(workdir: Path) -> str:
    """The demo's own SQLite file, whatever DIGEST_DATABASE_URL says: the demo starts it afresh each run and
    must never touch a real installation's database."""
    return f"sqlite:///{workdir.resolve() / 'demo.db'}"


def add_readers(engine: Engine) -> None:
    """Two confirmed readers: one of every theme, one of a single theme (so personalisation shows)."""
    with session_scope(engine) as session:
        for email, themes in DEMO_READERS.items():
            add_subscriber(session, email, themes, "daily", status="confirmed", origin="demo")
