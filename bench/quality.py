"""Summary quality benchmark: how grounded, short, specific and varied the TL;DRs are, whether theme overviews
repeat them, and how fast they come, for any summariser backend and settings.

    python bench/quality.py [--part tuning|held-out|both] [--run SPEC]... [--limit N] [--show N]

The corpus (tests/fixtures/corpus/papers.jsonl, 224 distinct titles) is split once and for all by a hash of each
title: a title whose SHA-256 starts with an even byte is in the `tuning` part (123 papers), the others are
`held-out` (101). Prompts are tuned on the tuning part only; the held-out part shows whether that tuning carries
over to abstracts the prompts were never tried on.

A SPEC is a comma-separated list of `[summariser]` settings, for example `backend=extractive`,
`model=smollm2,batch_size=8`, `model=HuggingFaceTB/SmolLM2-360M-Instruct` (a Hub id in the local cache or a
folder) or `backend=openai,base_url=http://127.0.0.1:8080/v1,model=qwen2.5-7b-instruct`. Default: the bundled
model with default settings, then `backend=extractive`.

For each part and run it prints:
- grounded: the share of stored TL;DRs that pass the grounding check (target >= 97%), and how they were made;
- words: mean and maximum per TL;DR (target <= 30);
- retrieval@1 with the all-MiniLM-L6-v2 embedding: each text is matched against the abstracts of its part, and
  counts when its own abstract is the closest. For the TL;DR alone, the title alone, the abstract's first
  sentence alone, and title + TL;DR (targets: TL;DR >= title + 0.05; title + TL;DR >= 0.95). digest itself uses
  that embedding to replace vague TL;DRs (`[summariser] prefer_specific`), so the same retrieval is also measured
  by TF-IDF word overlap, which nothing in digest optimises;
- the share of TL;DRs that open with the most common first two words (target <= 25%), and the share that
  contain a filler phrase (`grounding.FILLER_PHRASES`);
- overviews, written for each theme's papers in groups of 6 as an edition shows them: the share that repeat a
  sentence of their papers' TL;DRs (target 0) and the share that fell back to the extractive overview;
- throughput: TL;DRs end to end (`summarise_papers`: generation, checks, retries, storage) and generation only
  (the time of the batched first answers inside that same run; nothing for the extractive backend).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import math
import re
import statistics
import sys
import tempfile
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT / "tests" / "fixtures" / "corpus" / "papers.jsonl"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
from sqlalchemy import select  # noqa: E402

from digest.config import parse_config  # noqa: E402
from digest.demo import DEMO_CONFIG  # noqa: E402
from digest.models import Paper, Summary  # noqa: E402
from digest.store import open_database, session_scope  # noqa: E402
from digest.store import themes as store_themes  # noqa: E402
from digest.summarise import (  # noqa: E402
    get_summariser,
    grounding,
    overview_items,
    overview_task,
    summarise_papers,
    write_overview,
)
from digest.text import clean_source, split_sentences, words  # noqa: E402
from digest.themes import assign_themes, embed, rank_theme  # noqa: E402

PARTS = ("tuning", "held-out")
GROUP = 6
DEFAULT_RUNS = ("model=smollm2", "backend=extractive")


@dataclass(frozen=True)
class Record:
    title: str
    abstract: str


def part_of(title: str) -> str:
    """The fixed split: the first byte of the title's SHA-256, even for tuning, odd for held-out."""
    return PARTS[hashlib.sha256(title.encode("utf-8")).digest()[0] % 2]


def corpus_parts() -> dict[str, list[Record]]:
    """Distinct titles (first record of each), in corpus order, by part."""
    parts: dict[str, list[Record]] = {name: [] for name in PARTS}
    seen: set[str] = set()
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["title"] not in seen:
            seen.add(row["title"])
            parts[part_of(row["title"])].append(Record(row["title"], row["abstract"]))
    return parts


def parse_spec(spec: str) -> dict[str, str]:
    """`key=value,key=value` into [summariser] settings."""
    settings = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"--run {spec!r}: {item!r} is not key=value")
        settings[key.strip()] = value.strip()
    return settings


def bench_config(workdir: Path, settings: dict[str, str]):
    """The demo's themes and the given summariser settings, on a fresh SQLite file in `workdir`."""
    themes = tomllib.loads(DEMO_CONFIG.format(samples="", backend="transformers", similarity="true"))["themes"]
    raw = {"database": {"url": f"sqlite:///{workdir}/quality.db"}, "themes": themes, "summariser": settings}
    return parse_config(raw, workdir / "config.toml")


def store_records(engine, records: list[Record]) -> list[Paper]:
    with session_scope(engine) as session:
        papers = [
            Paper(key=f"quality:{i}", title=r.title, title_norm=r.title.lower(), abstract=r.abstract)
            for i, r in enumerate(records)
        ]
        session.add_all(papers)
    return papers


def timed(action):
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


# --- Measures ----------------------------------------------------------------------------------------------


def retrieval_at_1(queries: list[str], targets: np.ndarray) -> float:
    """The share of queries whose closest target (cosine) is their own, query i belonging to target i."""
    return own_is_closest(embed(queries) @ targets.T)


def own_is_closest(scores: np.ndarray) -> float:
    """The share of rows (queries) whose highest score is in their own column."""
    return float(np.mean(scores.argmax(axis=1) == np.arange(len(scores))))


class WordOverlap:
    """TF-IDF vectors (log term frequency, smoothed idf from the part's abstracts): a retrieval measure
    independent of the embedding model."""

    def __init__(self, abstracts: list[str]) -> None:
        counts = [Counter(self.tokens(a)) for a in abstracts]
        df = Counter(word for c in counts for word in c)
        self.idf = {word: math.log(len(abstracts) / n) + 1 for word, n in df.items()}
        self.column = {word: i for i, word in enumerate(self.idf)}
        self.abstracts = self.vectors(abstracts)

    @staticmethod
    def tokens(text: str) -> list[str]:
        return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())

    def vectors(self, texts: list[str]) -> np.ndarray:
        matrix = np.zeros((len(texts), len(self.column)), dtype=np.float32)
        for row, text in enumerate(texts):
            for word, n in Counter(self.tokens(text)).items():
                if word in self.column:
                    matrix[row, self.column[word]] = (1 + math.log(n)) * self.idf[word]
        return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-9)

    def retrieval_at_1(self, queries: list[str]) -> float:
        return own_is_closest(self.vectors(queries) @ self.abstracts.T)


def first_two_words(text: str) -> str:
    return " ".join(w.lower().strip(".,;:") for w in words(text)[:2])


def shares_a_sentence(overview: str, tldrs: list[str]) -> bool:
    """Whether the overview repeats any TL;DR sentence (compared without case, spacing or final punctuation)."""
    def key(sentence: str) -> str:
        return " ".join(words(sentence.lower())).rstrip(".!?")

    shown = {key(s) for tldr in tldrs for s in split_sentences(tldr)}
    return any(key(s) in shown for s in split_sentences(overview))


# --- One run on one part -----------------------------------------------------------------------------------


def tldr_rows(engine) -> dict[int, Summary]:
    with session_scope(engine) as session:
        return {row.paper_id: row for row in session.scalars(select(Summary).where(Summary.kind == "tldr"))}


def overview_groups(config, engine, papers: list[Paper]) -> list[tuple[str, list[Paper]]]:
    """Each theme's papers, ranked, in groups of GROUP (an edition's worth each)."""
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    assign_themes(config, engine, papers)
    groups = []
    with session_scope(engine) as session:
        for name in config.theme_names:
            ranked = [r.paper for r in rank_theme(config, name, store_themes.theme_candidates(session, name), now)]
            groups += [(name, ranked[i : i + GROUP]) for i in range(0, len(ranked), GROUP)]
    return groups


def measure_overviews(config, engine, papers: list[Paper], tldrs: dict[int, Summary]) -> tuple[int, int, int, float]:
    """(overviews, repeating a TL;DR sentence, fell back to the structured overview, seconds)."""
    groups = overview_groups(config, engine, papers)
    repeats = fell_back = 0
    started = time.perf_counter()
    for name, group in groups:
        overview = write_overview(config, name, overview_task(name, overview_items(group, tldrs)))
        repeats += shares_a_sentence(overview.text, [tldrs[p.id].text for p in group])
        fell_back += not overview.method.startswith("model")  # the structured overview
    return len(groups), repeats, fell_back, time.perf_counter() - started


class GenerationClock:
    """Times a summariser's first answers (its non-strict calls) inside a real run: generation alone."""

    def __init__(self, summariser) -> None:
        self.seconds = 0.0
        self.original = summariser.summarise
        summariser.summarise = self.summarise

    def summarise(self, tasks, strict=False):
        started = time.perf_counter()
        try:
            return self.original(tasks, strict=strict)
        finally:
            if not strict and tasks and tasks[0].kind == "tldr":
                self.seconds += time.perf_counter() - started


def run_part(settings: dict[str, str], part: str, records: list[Record], show: int, overviews: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="digest-quality-") as workdir:
        config = bench_config(Path(workdir), settings)
        engine = open_database(config.database_url)
        papers = store_records(engine, records)
        summariser = get_summariser(config)
        if hasattr(summariser, "load"):
            _, load_seconds = timed(summariser.load)
            print(f"  model load: {load_seconds:.2f} s")
        clock = GenerationClock(summariser)
        report, end_to_end = timed(lambda: summarise_papers(config, engine, papers))
        tldrs = tldr_rows(engine)
        texts = [tldrs[p.id].text for p in papers]
        report_tldrs(papers, texts, [tldrs[p.id] for p in papers], report.methods)
        print(f"  vague model answers: {report.vague}, replaced by the abstract's more specific sentence: "
              f"{report.replaced_vague}")
        generation = (f"{len(papers) / clock.seconds:.2f} abstracts/s ({clock.seconds:.1f} s: the first answers)"
                      if hasattr(summariser, "load") else "none (no model)")
        print(f"  throughput: end to end {len(papers) / end_to_end:.2f} abstracts/s ({end_to_end:.1f} s: generation, "
              f"checks, retries, storage), generation only {generation}")
        for paper, text in list(zip(papers, texts))[:show]:
            print(f"    - {paper.title[:70]}\n      {text}")
        if overviews:
            count, repeats, fell_back, seconds = measure_overviews(config, engine, papers, tldrs)
            print(f"  overviews: {count}, repeating a TL;DR sentence {repeats / count:.0%} (target 0), "
                  f"fell back {fell_back / count:.0%}, {seconds / count:.1f} s each")


def report_tldrs(papers: list[Paper], texts: list[str], rows: list[Summary], methods: dict[str, int]) -> None:
    n = len(papers)
    grounded = sum(row.grounded for row in rows)
    counts = [len(words(t)) for t in texts]
    abstracts = embed([clean_source(p.abstract) for p in papers])
    titles = [clean_source(p.title) for p in papers]
    firsts = [(split_sentences(clean_source(p.abstract)) or [""])[0] for p in papers]
    tldr_r, title_r, first_r, both_r = (
        retrieval_at_1(queries, abstracts)
        for queries in (texts, titles, firsts, [f"{t}. {s}" for t, s in zip(titles, texts)])
    )
    overlap = WordOverlap([clean_source(p.abstract) for p in papers])
    words_tldr, words_title = overlap.retrieval_at_1(texts), overlap.retrieval_at_1(titles)
    opening, opening_n = Counter(first_two_words(t) for t in texts).most_common(1)[0]
    filler = sum(bool(grounding.filler_phrases(t)) for t in texts)
    print(f"  grounded {grounded / n:.1%} (target >= 97%); methods {dict(sorted(methods.items()))}")
    print(f"  words: mean {statistics.mean(counts):.1f}, max {max(counts)} (target <= 30)")
    print(f"  retrieval@1: TL;DR {tldr_r:.3f}, title {title_r:.3f}, first sentence {first_r:.3f}, "
          f"title + TL;DR {both_r:.3f}  (targets: TL;DR >= title + 0.05 = {title_r + 0.05:.3f}; title + TL;DR >= 0.95)")
    print(f"  retrieval@1 by TF-IDF word overlap: TL;DR {words_tldr:.3f}, title {words_title:.3f}")
    print(f"  most common opening {opening!r}: {opening_n / n:.0%} (target <= 25%); with a filler phrase: {filler / n:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=(*PARTS, "both"), default="both", help="corpus part(s) to run (default both)")
    parser.add_argument("--run", action="append", metavar="SPEC",
                        help="summariser settings, key=value,... (repeatable; default: the bundled model, then extractive)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N papers of each part (default all)")
    parser.add_argument("--show", type=int, default=0, help="print the first N TL;DRs of each run")
    parser.add_argument("--no-overviews", action="store_true", help="skip the theme overviews (the slow part)")
    args = parser.parse_args()

    parts = corpus_parts()
    print(f"corpus: {', '.join(f'{name} {len(records)}' for name, records in parts.items())} distinct titles; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for spec in args.run or DEFAULT_RUNS:
        settings = parse_spec(spec)
        for part in PARTS if args.part == "both" else (args.part,):
            records = parts[part][: args.limit or None]
            print(f"\n[{spec}] {part} part, {len(records)} papers", flush=True)
            run_part(settings, part, records, args.show, not args.no_overviews)


if __name__ == "__main__":
    main()
