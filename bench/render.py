"""Rendering speed: a daily edition of 10 themes x 10 real corpus papers in every output (email HTML and text,
Markdown, archive page), and personalised HTML+text emails for many subscribers with their own theme choices.

    python bench/render.py [--subscribers 2000] [--max-themes 3]

Targets (issue 4): all outputs of the edition in under 0.5 s; more than 200 personalised emails per second.
Runs in a temporary folder with the extractive summariser, so no model is loaded.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import date, datetime, timezone
from functools import partial
from pathlib import Path

from digest.config import load_config
from digest.editions import build, edition_window
from digest.models import Paper, ThemeAssignment
from digest.render import EditionRenderer, EmailLinks, edition_outputs
from digest.render.archive import edition_page
from digest.render.templating import template_environment
from digest.store import open_database, session_scope
from digest.summarise import summarise_papers

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "corpus" / "papers.jsonl"
THEMES = 10
PAPERS_PER_THEME = 10
DAY = date(2026, 11, 23)
SEEN = datetime(2026, 11, 23, 6, tzinfo=timezone.utc)


def write_config(folder: Path) -> Path:
    themes = "".join(f'\n[[themes]]\nname = "Theme {n}"\nkeywords = ["theme{n}"]\n' for n in range(1, THEMES + 1))
    path = folder / "config.toml"
    path.write_text(
        '[digest]\ntitle = "Bench digest"\npostal_address = "1 Bench Street"\n'
        '[database]\nurl = "sqlite:///bench.db"\n[summariser]\nbackend = "extractive"\n'
        "[assign]\nother_bucket = false\n" + themes,
        encoding="utf-8",
    )
    return path


def seed_papers(engine) -> list[Paper]:
    """100 corpus papers, ten per theme, with upvotes, stars and four authors each."""
    records = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()][: THEMES * PAPERS_PER_THEME]
    with session_scope(engine) as session:
        papers = []
        for number, record in enumerate(records):
            paper = Paper(
                key=f"arxiv:2611.{number:05d}", arxiv_id=f"2611.{number:05d}", title=record["title"],
                title_norm=record["title"].lower(), abstract=record["abstract"],
                authors=["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"],
                abs_url=f"https://arxiv.org/abs/2611.{number:05d}", pdf_url=f"https://arxiv.org/pdf/2611.{number:05d}",
                code_url="https://github.com/example/code", github_stars=100 + number, upvotes=number,
                first_seen_at=SEEN, published_at=SEEN, announce_type="new",
            )
            session.add(paper)
            session.flush()
            theme = f"Theme {number // PAPERS_PER_THEME + 1}"
            session.add(ThemeAssignment(paper_id=paper.id, theme=theme, score=1 - number / 1000,
                                        reason="matched keywords: bench; similarity 0.5", themes_hash="bench"))
            papers.append(paper)
    return papers


def timed(function, repeat: int) -> float:
    """Median seconds of `repeat` calls."""
    durations = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def render_everything(config, edition, env) -> None:
    renderer = EditionRenderer(config, edition)
    renderer.email(None, renderer.public_links)
    renderer.markdown()
    edition_page(config, env, renderer.view)


def personalise(config, edition, subscribers: int, max_themes: int) -> tuple[float, int, int]:
    """Seconds for `subscribers` emails with random theme choices and their own links; distinct theme sets; bytes."""
    rng = random.Random(7)
    names = [f"Theme {n}" for n in range(1, THEMES + 1)]
    choices = [rng.sample(names, rng.randint(1, max_themes)) if rng.random() > 0.2 else [] for _ in range(subscribers)]
    renderer = EditionRenderer(config, edition)
    started = time.perf_counter()
    largest = 0
    for number, themes in enumerate(choices):
        token = f"{number:08x}"
        links = EmailLinks(f"https://digest.example.org/archive/daily-2026-11-23.html?s={token}",
                           f"https://digest.example.org/preferences?token={token}&id={number}",
                           f"https://digest.example.org/unsubscribe?token={token}&id={number}")
        email = renderer.email(themes, links)
        largest = max(largest, len(email.html.encode()))
    return time.perf_counter() - started, len({frozenset(themes) for themes in choices}), largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=2000, help="personalised emails to render")
    parser.add_argument("--max-themes", type=int, default=3, help="most themes one subscriber picks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = load_config(write_config(Path(folder)))
        engine = open_database(config.database_url)
        summarise_papers(config, engine, seed_papers(engine))
        render = partial(edition_outputs, config)
        window = edition_window(config, engine, "daily", DAY)
        edition = build(config, engine, window, render)  # the first build writes the theme overviews
        env = template_environment(config)
        render_seconds = timed(lambda: render_everything(config, edition, env), repeat=5)
        build_seconds = timed(lambda: build(config, engine, window, render, rebuild=True), repeat=5)
        seconds, theme_sets, largest = personalise(config, edition, args.subscribers, args.max_themes)
    shown = edition.html.count('<div class="paper" ')  # each paper's block, with its anchor id
    print(f"edition: {THEMES} themes x {PAPERS_PER_THEME} papers; email HTML {len(edition.html.encode()):,} bytes "
          f"({shown} papers, the other {THEMES * PAPERS_PER_THEME - shown} behind the web-version link), "
          f"text {len(edition.text.encode()):,} bytes, Markdown {len(edition.markdown.encode()):,} bytes")
    print(f"render all outputs (email HTML+text, Markdown, archive page): {render_seconds * 1000:.0f} ms (target < 500 ms)")
    print(f"rebuild from the database (select, rank, overviews, render, store): {build_seconds * 1000:.0f} ms")
    print(f"personalised HTML+text: {args.subscribers} subscribers, {theme_sets} distinct theme sets, "
          f"{seconds:.2f} s = {args.subscribers / seconds:,.0f} subscribers/s (target > 200/s); largest email {largest:,} bytes")


if __name__ == "__main__":
    main()
