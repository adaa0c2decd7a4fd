"""Whole-day benchmark: one day of a large installation, every stage through digest's own code, on SQLite and on
PostgreSQL.

    python bench/pipeline.py [--papers 1000] [--subscribers 10000] [--summariser transformers|extractive]
                             [--databases sqlite,postgresql] [--workers 2] [--slopes] [--smtp-reply-ms 0]

The day: `--papers` new papers (the corpus in tests/fixtures/corpus, repeated with invented ids, authors and
categories) arrive in four arXiv RSS listings that cross-list each other and a Hugging Face daily-papers JSON;
they are embedded and assigned to 10 themes, get their TL;DRs from `--summariser` (default: the bundled model),
and go into the daily edition (with a model-written overview per theme), which is personalised and sent to
`--subscribers` readers (varied themes, daily, weekly or both) over SMTP to an aiosmtpd sink in another
process, by `--workers` sender processes. The same edition is then sent again, as a copy, by one sender, for
the ratio of `--workers` senders to one measured in the same run. The sink answers each message at once, or after
`--smtp-reply-ms` as a mail server across a network does: on loopback it answers in microseconds but burns as
much CPU per message as a sender, which on a 2-core machine caps what a second sender can add.

Printed per database: seconds per stage (ingest; embed and assign; summarise; build, with the overviews' share;
personalise and send), the day's total and the total without summarising, peak memory of this process (the
send workers are separate processes of ~100 MB each), and the send ratio. `--slopes` runs a second day with twice the papers and subscribers and
prints what each extra 1,000 papers and each extra 10,000 subscribers cost. Each stage also shows its CPU
seconds (this process and its finished children: ingest readers, send workers), which other processes on a
shared machine move far less than wall time; the load average is printed beside the figures.

PostgreSQL: each day gets a fresh database on the server named by DIGEST_BENCH_POSTGRES (an admin URL; default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres), dropped afterwards.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIGEST_SECRET", "bench-secret")

POSTGRES_ADMIN_URL = os.environ.get("DIGEST_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
LISTINGS = ["cs.CL", "cs.CV", "cs.LG", "cs.AI"]
HF_SHARE = 0.06  # of the day's papers also on Hugging Face's daily list, with upvotes and comments
THEMES = [
    ("Language models", "Pretraining, fine-tuning and reasoning of large language models.",
     ["language model", "LLM", "pretraining", "in-context"]),
    ("Image generation", "Diffusion models that create or edit images.", ["diffusion", "text-to-image", "image editing"]),
    ("Video and motion", "Generating video, motion and animation.", ["video generation", "video diffusion", "motion generation"]),
    ("Prompting and efficient tuning", "Prompts and parameter-efficient fine-tuning of pretrained models.",
     ["prompt tuning", "prompting", "parameter-efficient", "LoRA"]),
    ("Vision and language", "Models that connect images and text.", ["vision-language", "multimodal", "CLIP"]),
    ("Robots and agents", "Robots, embodied agents, planning and tool use.", ["robot", "manipulation", "agent", "tool use"]),
    ("Speech and audio", "Speech, voice, audio and music.", ["speech", "audio", "voice", "music"]),
    ("Efficient inference", "Making models faster and smaller at inference.", ["inference", "sparse", "compression", "quantization"]),
    ("Evaluation", "Benchmarks, datasets and how models are evaluated.", ["benchmark", "evaluation", "dataset"]),
    ("Interpretability and alignment", "How models work inside and how they are aligned with people.",
     ["interpretability", "circuit", "alignment", "human feedback"]),
]
STAGES = ["ingest", "embed and assign", "summarise", "build", "personalise and send"]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_module(name: str):
    """Another bench script as a module: `ingest` (its renderers write the feed formats exactly as arXiv and
    Hugging Face serve them) or `send` (its config, SMTP sink and free port)."""
    key = f"bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, Path(__file__).with_name(f"{name}.py"))
        sys.modules[key] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[key])
    return sys.modules[key]


# --- The day's input --------------------------------------------------------------------------------------


def write_feeds(folder: Path, papers: int, seed: int) -> list[tuple[str, str, Path]]:
    """(source name, kind, file): one arXiv RSS listing per category (a paper appears in every listing of its
    categories, as a cross-list after the first) and a Hugging Face daily list of some of the same papers."""
    feeds = bench_module("ingest")
    items = feeds.make_items(papers, seed=seed, first_id=10000 + seed * papers)
    rng = random.Random(seed)
    by_listing: dict[str, list] = {name: [] for name in LISTINGS}
    for item in items:
        listed = [c for c in item.categories if c in by_listing] or ["cs.LG"]
        for position, category in enumerate(listed):
            entry = item if position == 0 else feeds.Item(**{**item.__dict__, "announce_type": "cross"})
            by_listing[category].append(entry)
    sources = []
    for category, entries in by_listing.items():
        path = folder / f"arxiv-{category}.xml"
        path.write_text(feeds.render_rss(entries, query=category), encoding="utf-8")
        sources.append((f"arxiv-{category}", "arxiv-rss", path))
    hf = [item for item in items if rng.random() < HF_SHARE]
    for item in hf:
        item.github_repo, item.github_stars = f"https://github.com/bench/{item.arxiv_id}", rng.randint(0, 5000)
    path = folder / "hf-daily.json"
    path.write_text(feeds.render_hf(hf), encoding="utf-8")
    sources.append(("hf-daily", "hf-daily", path))
    return sources


def write_config(folder: Path, url: str, sources: list[tuple[str, str, Path]], summariser: str, port: int) -> Path:
    themes = "".join(
        f'[[themes]]\nname = "{name}"\ndescription = "{description}"\nkeywords = {json.dumps(keywords)}\n\n'
        for name, description, keywords in THEMES
    )
    feeds = "".join(f'[[sources]]\nname = "{name}"\nkind = "{kind}"\nurl = "{path}"\n\n' for name, kind, path in sources)
    path = folder / "config.toml"
    middle = feeds + themes + f'[summariser]\nbackend = "{summariser}"\n\n'
    path.write_text(bench_module("send").config_text(url, port, middle), encoding="utf-8")
    return path


def add_subscribers(engine, count: int, seed: int) -> None:
    """`count` confirmed readers: a quarter take every theme, the rest one to three; most daily, some weekly
    (they get no daily edition) or both."""
    from digest.deliver.subscriber_csv import CsvRow, import_rows
    from digest.store import session_scope

    rng = random.Random(seed)
    names = [name for name, _, _ in THEMES]
    rows = []
    for n in range(count):
        themes = [] if rng.random() < 0.25 else sorted(rng.sample(names, rng.randint(1, 3)))
        frequency = rng.choices(["daily", "weekly", "both"], weights=[70, 15, 15])[0]
        rows.append(CsvRow(n + 2, f"reader{seed}-{n}@example.com", "confirmed", themes, frequency))
    for start in range(0, count, 2000):
        with session_scope(engine) as session:
            import_rows(session, rows[start : start + 2000])


# --- Running one day ----------------------------------------------------------------------------------------


@dataclass
class Day:
    database: str
    papers: int
    subscribers: int
    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    overviews: float = 0.0
    messages: int = 0
    send_one_worker: float = 0.0
    peak_mb: float = 0.0
    load: str = ""

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (ingest readers, send workers)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@contextmanager
def stopwatch(day: Day, stage: str):
    print(f"  {stage} ...", end="", flush=True)
    started, cpu = time.perf_counter(), cpu_seconds()
    yield
    day.seconds[stage] = time.perf_counter() - started
    day.cpu[stage] = cpu_seconds() - cpu
    print(f" {day.seconds[stage]:.1f} s, {day.cpu[stage]:.1f} CPU s  (load {load_average()})", flush=True)


@contextmanager
def database(kind: str, folder: Path):
    """A fresh, empty database of `kind`: a SQLite file in `folder`, or a new PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    from sqlalchemy import create_engine, make_url, text

    from digest.store import get_engine

    name = f"digest_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_day(kind: str, papers: int, subscribers: int, summariser: str, workers: int, seed: int, port: int) -> Day:
    from digest import editions, pipeline
    from digest.config import load_config
    from digest.models import Edition
    from digest.store import open_database, session_scope
    from digest.store import themes as store_themes
    from digest.store.papers import papers_first_seen
    from digest.summarise import summarise_papers
    from digest.themes import assign_themes, themes_hash

    day = Day(kind, papers, subscribers)
    print(f"\n{kind}: {papers} papers, {subscribers} subscribers, summariser {summariser}, load {load_average()}")
    with tempfile.TemporaryDirectory(prefix="digest-day-") as workdir, database(kind, Path(workdir)) as url:
        folder = Path(workdir)
        os.chdir(folder)
        config = load_config(write_config(folder, url, write_feeds(folder, papers, seed), summariser, port))
        engine = open_database(config.database_url)
        add_subscribers(engine, subscribers, seed)  # the readers were there before the day began

        with stopwatch(day, "ingest"):
            report = pipeline.ingest(config, engine)
        assert not report.failed and report.new == papers, [str(result) for result in report.results]
        with stopwatch(day, "embed and assign"):
            with session_scope(engine) as session:
                needing = store_themes.papers_needing_assignment(session, themes_hash(config))
            assign_themes(config, engine, needing)
        with stopwatch(day, "summarise"):
            with session_scope(engine) as session:
                todays = papers_first_seen(session, newest_first=True)
            summarised = summarise_papers(config, engine, todays)
        print(f"    TL;DRs: {summarised.methods}")
        with stopwatch(day, "build"), timing_overviews(editions, day):
            edition = pipeline.build_edition(config, engine, "daily")
        assert edition.status == "ready", edition.empty_reason
        with stopwatch(day, "personalise and send"):
            sent = pipeline.send_edition(config, engine, edition.id, workers=workers)
        day.messages = sent.sent
        print(f"    {sent.summary()} with {workers} worker(s): {sent.sent / day.seconds['personalise and send']:.0f} msg/s")
        if workers > 1:
            with session_scope(engine) as session:
                copy = Edition(period="daily", start_date=edition.start_date + timedelta(days=1),
                               end_date=edition.end_date + timedelta(days=1), title=edition.title, status="ready",
                               content=edition.content, content_hash=edition.content_hash)
                session.add(copy)
                session.flush()
                copy_id = copy.id
            started = time.perf_counter()
            again = pipeline.send_edition(config, engine, copy_id, workers=1)
            day.send_one_worker = time.perf_counter() - started
            print(f"    the same edition again by 1 worker: {again.sent} in {day.send_one_worker:.1f} s, "
                  f"{again.sent / day.send_one_worker:.0f} msg/s; {workers} workers / 1 = "
                  f"{day.send_one_worker / day.seconds['personalise and send']:.2f}x")
        os.chdir(ROOT)
    day.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    day.load = load_average()
    return day


@contextmanager
def timing_overviews(editions, day: Day):
    """Count the time `build` spends having the model write theme overviews (measurement only)."""
    original = editions.write_overviews

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            day.overviews += time.perf_counter() - started

    editions.write_overviews = timed
    try:
        yield
    finally:
        editions.write_overviews = original


# --- The SMTP sink and the report -------------------------------------------------------------------------


@contextmanager
def smtp_sink(reply_ms: float):
    """bench/send.py's aiosmtpd sink in its own process, answering each message after `reply_ms`; yields its
    port."""
    port = bench_module("send").free_port()
    sink = subprocess.Popen([sys.executable, str(Path(__file__).with_name("send.py")), "--sink", str(port),
                             "--sink-reply-ms", str(reply_ms)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    try:
        yield port
    finally:
        sink.stdin.write("done\n")
        sink.stdin.flush()
        received, cpu = sink.stdout.readline().split()
        sink.wait()
        print(f"\nthe SMTP sink received {received} messages, using {cpu} CPU seconds")


def print_table(days: list[Day], workers: int) -> None:
    header = ["Stage (wall; CPU)"] + [f"{d.database}, {d.papers} papers, {d.subscribers} readers" for d in days]
    rows = [[stage] + [f"{d.seconds[stage]:.1f} s; {d.cpu[stage]:.1f} s" for d in days] for stage in STAGES]
    rows[3][0] = "build (of which theme overviews)"
    rows[3][1:] = [f"{d.seconds['build']:.1f} s ({d.overviews:.1f} s); {d.cpu['build']:.1f} s" for d in days]
    rows[4][0] = f"personalise and send ({workers} workers)" if workers > 1 else rows[4][0]
    rows += [
        ["whole day"] + [f"{d.total:.1f} s ({d.total / 60:.1f} min); {sum(d.cpu.values()):.1f} s" for d in days],
        ["whole day but summarise and overviews"] + [f"{d.total - d.seconds['summarise'] - d.overviews:.1f} s" for d in days],
        ["messages sent"] + [str(d.messages) for d in days],
    ]
    if workers > 1:
        rows.append([f"send, {workers} workers / 1 worker"] +
                    [f"{d.send_one_worker / d.seconds['personalise and send']:.2f}x" for d in days])
    rows += [
        ["peak memory of this process so far"] + [f"{d.peak_mb:.0f} MB" for d in days],
        ["load average after (1, 5, 15 min)"] + [d.load for d in days],
    ]
    print("\n| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def print_slopes(small: Day, large: Day) -> None:
    papers = (large.papers - small.papers) / 1000
    readers = (large.subscribers - small.subscribers) / 10000
    print(f"\n{small.database}: cost of each extra 1,000 papers and 10,000 subscribers "
          f"({small.papers} -> {large.papers} papers, {small.subscribers} -> {large.subscribers} subscribers)")
    for stage in STAGES[:4]:
        print(f"  {stage}: +{(large.seconds[stage] - small.seconds[stage]) / papers:.1f} s per 1,000 papers")
    send = "personalise and send"
    print(f"  {send}: +{(large.seconds[send] - small.seconds[send]) / readers:.1f} s per 10,000 subscribers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=1000, help="new papers in the day (default 1000)")
    parser.add_argument("--subscribers", type=int, default=10_000, help="confirmed readers (default 10000)")
    parser.add_argument("--summariser", default="transformers", choices=["transformers", "extractive"],
                        help="TL;DRs and overviews by the bundled model (default) or extractive (no model, quick)")
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--workers", type=int, default=2, help="sender processes for the day's send (default 2)")
    parser.add_argument("--slopes", action="store_true", help="also run a day with twice the papers and subscribers")
    parser.add_argument("--smtp-reply-ms", type=float, default=0.0,
                        help="the SMTP sink answers each message after this many ms, as a server across a network "
                             "does (default 0: on loopback, where the sink's own CPU competes with the senders)")
    args = parser.parse_args()

    import torch

    print(f"load average at start: {load_average()}  (cpus: {os.cpu_count()}, torch threads: {torch.get_num_threads()})")
    import digest.pipeline  # noqa: F401  (imports are not part of what is timed)
    from digest.themes import embedding_model

    embedding_model()  # loaded once per process; the day's timing starts with it in memory
    days = []
    print(f"the SMTP sink answers each message after {args.smtp_reply_ms:g} ms")
    with smtp_sink(args.smtp_reply_ms) as port:
        for kind in args.databases.split(","):
            days.append(run_day(kind, args.papers, args.subscribers, args.summariser, args.workers, 1, port))
            if args.slopes:
                days.append(run_day(kind, 2 * args.papers, 2 * args.subscribers, args.summariser, args.workers, 2, port))
    print_table(days, args.workers)
    if args.slopes:
        for small, large in zip(days[::2], days[1::2]):
            print_slopes(small, large)
    print(f"\nload average at end: {load_average()}")


if __name__ == "__main__":
    main()
