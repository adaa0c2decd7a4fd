"""Delivery speed and memory: N confirmed subscribers, one edition of real corpus papers, sent over SMTP to a
local aiosmtpd sink in another process. Everything a real send does is timed: queueing the outbox, claiming,
personalising and rendering, SMTP, and recording each reply in its own commit.

    python bench/send.py [--subscribers 10000] [--checkpoint 2000]

Prints messages per second and the sender's peak RSS after `checkpoint` messages and after all of them
(flat means rows are streamed, not loaded).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CORPUS = REPO / "tests" / "fixtures" / "corpus" / "papers.jsonl"
THEMES = ["Language models", "Image and video generation", "Agents"]
PAPERS_PER_THEME = 8


def run_sink(port: int, reply_ms: float = 0.0) -> None:
    """An SMTP server that accepts and counts every message (the far end of the bench), answering each DATA
    after `reply_ms` milliseconds, as a mail server across a network does."""
    import asyncio

    from aiosmtpd.controller import Controller

    class Counter:
        count = 0

        async def handle_DATA(self, server, session, envelope):
            if reply_ms:
                await asyncio.sleep(reply_ms / 1000)
            Counter.count += 1
            return "250 2.0.0 Ok: queued"

    controller = Controller(Counter(), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(Counter.count, round(cpu.ru_utime + cpu.ru_stime, 1), flush=True)
    controller.stop()


def config_text(database_url: str, port: int, middle: str) -> str:
    """A bench config: its digest and database sections, then `middle` (sources, themes, summariser), then
    delivery over SMTP to the sink on `port` with no rate limit worth the name."""
    return (
        '[digest]\ntitle = "Bench digest"\nbase_url = "https://digest.example.org"\n'
        f'postal_address = "1 Bench Street"\n\n[database]\nurl = "{database_url}"\n\n' + middle +
        f'[email]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        'from = "Bench digest <digest@example.org>"\nlist_id = "bench.example.org"\n'
        'unsubscribe_mailto = "leave@example.org"\nrate_per_second = 100000\nrate_per_hour = 10000000\n'
        'claim_batch = 50\n'
    )


def write_config(folder: Path, port: int) -> Path:
    themes = "".join(f'[[themes]]\nname = "{name}"\n\n' for name in THEMES)
    path = folder / "config.toml"
    path.write_text(config_text("sqlite:///bench.db", port, themes + '[summariser]\nbackend = "extractive"\n\n'),
                    encoding="utf-8")
    return path


def edition_content() -> dict:
    """Three themes of real corpus papers, shaped as `build_edition` stores them."""
    records = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    themes = []
    for index, name in enumerate(THEMES):
        papers = []
        for offset in range(PAPERS_PER_THEME):
            number = index * PAPERS_PER_THEME + offset
            record = records[number % len(records)]
            papers.append({
                "paper_id": number + 1, "score": 1.0 - number / 100, "reason": "matched keywords: bench",
                "title": record["title"], "authors": ["Ada Lovelace", "Alan Turing"],
                "abs_url": f"https://arxiv.org/abs/2611.{number:05d}", "pdf_url": f"https://arxiv.org/pdf/2611.{number:05d}",
                "tldr": record["abstract"].split(". ")[0].rstrip(".") + ".",
            })
        themes.append({"name": name, "overview": None, "papers": papers})
    return {"themes": themes}


def seed(engine, subscribers: int) -> int:
    """Import `subscribers` confirmed readers with a mix of theme choices; return the edition id."""
    from digest.models import Edition
    from digest.store import session_scope
    from digest.deliver.subscriber_csv import CsvRow, import_rows

    choices = [[], [THEMES[0]], [THEMES[1], THEMES[2]], [THEMES[0], THEMES[2]]]
    rows = [CsvRow(n + 2, f"reader{n}@example.com", "confirmed", choices[n % len(choices)], "daily")
            for n in range(subscribers)]
    for start in range(0, subscribers, 1000):  # in chunks, so seeding does not set the peak RSS
        with session_scope(engine) as session:
            import_rows(session, rows[start : start + 1000])
    with session_scope(engine) as session:
        edition = Edition(period="daily", start_date=date.today(), end_date=date.today(), title="Bench digest",
                          status="ready", content=edition_content(), content_hash="bench")
        session.add(edition)
        session.flush()
        return edition.id


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(subscribers: int, checkpoint: int) -> None:
    from digest.config import load_config
    from digest.pipeline import send_edition
    from digest.store import open_database

    port = free_port()
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        os.environ.setdefault("DIGEST_SECRET", "bench-secret")
        config = load_config(write_config(Path(folder), port))
        engine = open_database(config.database_url)
        started = time.perf_counter()
        edition_id = seed(engine, subscribers)
        print(f"seeded {subscribers} confirmed subscribers in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        first = send_edition(config, engine, edition_id, limit=checkpoint)
        first_seconds = time.perf_counter() - started
        rss_first = peak_rss_mb()
        rest = send_edition(config, engine, edition_id)
        total_seconds = time.perf_counter() - started
        rss_total = peak_rss_mb()
    sink.stdin.write("done\n")
    sink.stdin.flush()
    received, sink_cpu = sink.stdout.readline().split()
    sink.wait()

    sent = first.sent + rest.sent
    sender_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    print(f"sent {sent} messages (sink received {received}); failed {first.failed + rest.failed}")
    print(f"CPU seconds: sender {sender_cpu:.1f} (whole process), aiosmtpd sink {sink_cpu}")
    print(f"first {first.sent}: {first_seconds:.1f} s, {first.sent / first_seconds:.0f} msg/s "
          f"(includes queueing all {subscribers} outbox rows)")
    print(f"all {sent}: {total_seconds:.1f} s, {sent / total_seconds:.0f} msg/s end to end")
    print(f"peak RSS after {first.sent}: {rss_first:.0f} MB; after {sent}: {rss_total:.0f} MB")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--checkpoint", type=int, default=2_000)
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sink-reply-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(args.sink, args.sink_reply_ms)
    else:
        bench(args.subscribers, args.checkpoint)


if __name__ == "__main__":
    main()
