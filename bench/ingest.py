"""Ingest benchmark: writes >= 10,000 entries of local feed files (arXiv RSS and Atom listings, arXiv API pages and
Hugging Face daily-papers JSON, from the real titles and abstracts in tests/fixtures/corpus with invented ids), then
times a bare parse of the same files (feedparser for XML, json.loads for JSON), a full ingest into a fresh SQLite
database, and a re-ingest. Prints entries/s, the ratio to the bare parse, peak memory, and what the re-ingest stored.

    python bench/ingest.py [--entries 10000] [--per-file 500] [--dir /tmp/digest-bench]

The `render_*` functions write the formats exactly as arXiv and Hugging Face serve them; they also made
`digest/samples/` and `tests/fixtures/`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "fixtures" / "corpus" / "papers.jsonl"
ARXIV_NS = 'xmlns:arxiv="http://arxiv.org/schemas/atom"'
DC_NS = 'xmlns:dc="http://purl.org/dc/elements/1.1/"'
AUTHORS = [
    "Andr\\'e Martins", 'J{\\"o}rg M\\"uller', "Fran\\c{c}ois Dubois", 'Zo\\"e Laurent', "Mar\\'ia Garc\\'ia",
    "Ji\\v{r}\\'i Nov\\'ak", "Li Wei", "Priya Raman", "Tom\\'a\\v{s} Kr\\'al", "Chen Yu", "Amara Okafor",
    "S{\\o}ren Kierk", "Hannah Schmidt", "Kenji Watanabe", "Olga Petrova", "Lucas Ferreira", "Aisha Khan",
    "Mateo Rossi", "Sofia Lindqvist", "Noah Cohen", "Yuki Tanaka", "Fatima Zahra", "Ewa Kowalska", "Diego Ruiz",
]
CATEGORIES = ["cs.CL", "cs.CV", "cs.LG", "cs.AI", "cs.RO", "stat.ML", "cs.IR"]


@dataclass
class Item:
    """One paper as the feeds list it. `authors` hold arXiv's TeX escapes; JSON and the API get them decoded."""

    arxiv_id: str
    title: str
    abstract: str
    authors: list[str]
    categories: list[str]
    announced: datetime
    version: int = 1
    announce_type: str = "new"
    upvotes: int = 0
    num_comments: int = 0
    github_repo: str | None = None
    github_stars: int | None = None
    keywords: list[str] = field(default_factory=list)


def corpus_papers() -> list[dict]:
    """The corpus, one record per distinct title."""
    seen, papers = set(), []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["title"] not in seen:
            seen.add(record["title"])
            papers.append(record)
    return papers


def make_items(count: int, seed: int = 7, first_id: int = 10000, month: str = "2406") -> list[Item]:
    """`count` items cycling through the corpus, each with its own invented arXiv id, authors and categories."""
    rng = random.Random(seed)
    papers = corpus_papers()
    start = datetime(2024, 6, 10, 4, tzinfo=timezone.utc)
    items = []
    for n in range(count):
        paper = papers[n % len(papers)]
        suffix = f" (part {n // len(papers) + 1})" if n >= len(papers) else ""
        items.append(
            Item(
                arxiv_id=f"{month}.{first_id + n:05d}",
                title=paper["title"] + suffix,
                abstract=paper["abstract"],
                authors=rng.sample(AUTHORS, rng.randint(1, 6)),
                categories=rng.sample(CATEGORIES, rng.randint(1, 3)),
                announced=start + timedelta(days=n % 5),
                upvotes=rng.randint(0, 300),
                num_comments=rng.randint(0, 20),
                keywords=rng.sample(["diffusion", "agents", "benchmark", "reasoning", "video", "alignment"], 2),
            )
        )
    return items


def tex_free(name: str) -> str:
    """The plain-Unicode spelling of an invented TeX author name (what the API and HF print)."""
    from digest.sources.entry import decode_tex

    return decode_tex(name)


def rfc822(moment: datetime) -> str:
    return moment.astimezone(timezone(timedelta(hours=-4))).strftime("%a, %d %b %Y %H:%M:%S -0400")


def listing_description(item: Item) -> str:
    return f"arXiv:{item.arxiv_id}v{item.version} Announce Type: {item.announce_type} \nAbstract: {item.abstract}"


def render_rss(items: list[Item], query: str = "cs.CL+cs.CV+cs.LG") -> str:
    """An arXiv RSS 2.0 listing as rss.arxiv.org serves it (2024 format)."""
    when = rfc822(items[0].announced if items else datetime(2024, 6, 8, 4, tzinfo=timezone.utc))
    out = [
        "<?xml version='1.0' encoding='UTF-8'?>",
        f'<rss {ARXIV_NS} {DC_NS} xmlns:atom="http://www.w3.org/2005/Atom" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" version="2.0">',
        "  <channel>",
        f"    <title>{query} updates on arXiv.org</title>",
        f"    <link>http://rss.arxiv.org/rss/{query}</link>",
        f"    <description>{query} updates on the arXiv.org e-print archive.</description>",
        f'    <atom:link href="https://rss.arxiv.org/rss/{query}" rel="self" type="application/rss+xml"/>',
        "    <docs>http://www.rssboard.org/rss-specification</docs>",
        "    <language>en-us</language>",
        f"    <lastBuildDate>{when}</lastBuildDate>",
        "    <managingEditor>rss-help@arxiv.org</managingEditor>",
        f"    <pubDate>{when}</pubDate>",
        "    <skipDays>\n      <day>Saturday</day>\n      <day>Sunday</day>\n    </skipDays>",
    ]
    for item in items:
        out += [
            "    <item>",
            f"      <title>{escape(item.title)}</title>",
            f"      <link>https://arxiv.org/abs/{item.arxiv_id}</link>",
            f"      <description>{escape(listing_description(item))}</description>",
            f'      <guid isPermaLink="false">oai:arXiv.org:{item.arxiv_id}v{item.version}</guid>',
            *(f"      <category>{category}</category>" for category in item.categories),
            f"      <pubDate>{rfc822(item.announced)}</pubDate>",
            f"      <arxiv:announce_type>{item.announce_type}</arxiv:announce_type>",
            "      <dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>",
            f"      <dc:creator>{escape(', '.join(item.authors))}</dc:creator>",
            "    </item>",
        ]
    out += ["  </channel>", "</rss>", ""]
    return "\n".join(out)


def render_atom(items: list[Item], query: str = "cs.CL+cs.CV+cs.LG") -> str:
    """An arXiv Atom listing as rss.arxiv.org/atom/... serves it."""
    when = (items[0].announced if items else datetime(2024, 6, 8, 4, tzinfo=timezone.utc)).isoformat()
    out = [
        "<?xml version='1.0' encoding='UTF-8'?>",
        f'<feed xmlns="http://www.w3.org/2005/Atom" {ARXIV_NS} {DC_NS} xml:lang="en-us">',
        f"  <id>http://rss.arxiv.org/atom/{query}</id>",
        f"  <title>{query} updates on arXiv.org</title>",
        f"  <updated>{when}</updated>",
        f'  <link href="http://rss.arxiv.org/atom/{query}" rel="self" type="application/atom+xml"/>',
        f"  <subtitle>{query} updates on the arXiv.org e-print archive.</subtitle>",
    ]
    for item in items:
        out += [
            "  <entry>",
            f"    <id>oai:arXiv.org:{item.arxiv_id}v{item.version}</id>",
            f"    <title>{escape(item.title)}</title>",
            f"    <updated>{item.announced.isoformat()}</updated>",
            f'    <link href="https://arxiv.org/abs/{item.arxiv_id}" rel="alternate" type="text/html"/>',
            f"    <summary>{escape(listing_description(item))}</summary>",
            *(f'    <category term="{c}" scheme="http://arxiv.org/schemas/atom"/>' for c in item.categories),
            f"    <published>{item.announced.isoformat()}</published>",
            f"    <arxiv:announce_type>{item.announce_type}</arxiv:announce_type>",
            "    <rights>http://creativecommons.org/licenses/by/4.0/</rights>",
            f"    <dc:creator>{escape(', '.join(item.authors))}</dc:creator>",
            "  </entry>",
        ]
    out += ["</feed>", ""]
    return "\n".join(out)


def render_api(items: list[Item], total: int | None = None, start: int = 0, query: str = "cat:cs.CL") -> str:
    """One page of the arXiv API (export.arxiv.org/api/query) Atom response."""
    opensearch = 'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/"'
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        f'  <link href="http://arxiv.org/api/query?search_query%3D{query}%26start%3D{start}" rel="self" '
        'type="application/atom+xml"/>',
        f'  <title type="html">ArXiv Query: search_query={escape(query)}&amp;start={start}</title>',
        "  <id>http://arxiv.org/api/benchmark</id>",
        "  <updated>2024-06-11T00:00:00-04:00</updated>",
        f"  <opensearch:totalResults {opensearch}>{len(items) if total is None else total}</opensearch:totalResults>",
        f"  <opensearch:startIndex {opensearch}>{start}</opensearch:startIndex>",
        f"  <opensearch:itemsPerPage {opensearch}>{len(items)}</opensearch:itemsPerPage>",
    ]
    for item in items:
        published = item.announced - timedelta(days=3)
        out += [
            "  <entry>",
            f"    <id>http://arxiv.org/abs/{item.arxiv_id}v{item.version}</id>",
            f"    <updated>{(published + timedelta(days=item.version - 1)).strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>",
            f"    <published>{published.strftime('%Y-%m-%dT%H:%M:%SZ')}</published>",
            f"    <title>{escape(item.title)}</title>",
            f"    <summary>  {escape(item.abstract)}\n</summary>",
            *(f"    <author>\n      <name>{escape(tex_free(name))}</name>\n    </author>" for name in item.authors),
            f'    <link href="http://arxiv.org/abs/{item.arxiv_id}v{item.version}" rel="alternate" type="text/html"/>',
            f'    <link title="pdf" href="http://arxiv.org/pdf/{item.arxiv_id}v{item.version}" rel="related" '
            'type="application/pdf"/>',
            f'    <arxiv:primary_category {ARXIV_NS} term="{item.categories[0]}" scheme="http://arxiv.org/schemas/atom"/>',
            *(f'    <category term="{c}" scheme="http://arxiv.org/schemas/atom"/>' for c in item.categories),
            "  </entry>",
        ]
    out += ["</feed>", ""]
    return "\n".join(out)


def render_hf(items: list[Item]) -> str:
    """A Hugging Face daily-papers JSON answer (huggingface.co/api/daily_papers?date=...)."""
    papers = []
    for n, item in enumerate(items):
        published = (item.announced - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        paper = {
            "id": item.arxiv_id,
            "authors": [
                {"_id": f"667a{n:04x}{k:02x}", "name": tex_free(name), "hidden": False}
                for k, name in enumerate(item.authors)
            ],
            "publishedAt": published,
            "submittedOnDailyAt": item.announced.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "title": item.title,
            "summary": item.abstract,
            "upvotes": item.upvotes,
            "discussionId": f"667b{n:08x}",
            "ai_keywords": item.keywords,
        }
        if item.github_repo:
            paper["githubRepo"] = item.github_repo
            paper["githubStars"] = item.github_stars
        papers.append(
            {
                "paper": paper,
                "publishedAt": published,
                "title": item.title,
                "summary": item.abstract,
                "thumbnail": f"https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{item.arxiv_id}.png",
                "numComments": item.num_comments,
                "submittedBy": {"_id": "60f1abe7544c2adfd699860c", "fullname": "AK", "name": "akhaliq", "type": "user"},
                "isAuthorParticipating": False,
            }
        )
    return json.dumps(papers, indent=2, ensure_ascii=False) + "\n"


# --- The benchmark -----------------------------------------------------------------------------------------

RENDERERS = {"rss": render_rss, "atom": render_atom, "api": render_api, "hf": render_hf}
KINDS = {"rss": "arxiv-rss", "atom": "arxiv-rss", "api": "arxiv-api", "hf": "hf-daily"}


def write_feeds(folder: Path, entries: int, per_file: int) -> list[tuple[str, Path]]:
    """Feed files holding `entries` distinct papers, `per_file` each, rotating through the four formats."""
    folder.mkdir(parents=True, exist_ok=True)
    items = make_items(entries)
    files = []
    for number, start in enumerate(range(0, entries, per_file)):
        fmt = list(RENDERERS)[number % len(RENDERERS)]
        path = folder / f"{number:03d}-{fmt}.{'json' if fmt == 'hf' else 'xml'}"
        path.write_text(RENDERERS[fmt](items[start : start + per_file]), encoding="utf-8")
        files.append((fmt, path))
    return files


@dataclass
class Timing:
    """Wall-clock and CPU seconds of one step. CPU time (this process only) hardly moves with the load other
    processes put on a shared machine, so ratios are given for both."""

    wall: float
    cpu: float

    @classmethod
    def start(cls) -> Timing:
        return cls(time.perf_counter(), time.process_time())

    def stop(self) -> Timing:
        return Timing(time.perf_counter() - self.wall, time.process_time() - self.cpu)


def bare_parse(files: list[tuple[str, Path]]) -> tuple[int, Timing]:
    """Entries found and time taken by feedparser (XML, same options as ingest) and json.loads (JSON) alone."""
    import feedparser

    from digest.sources.xmlfeed import FEEDPARSER_OPTIONS

    clock, entries = Timing.start(), 0
    for fmt, path in files:
        data = path.read_bytes()
        entries += len(json.loads(data)) if fmt == "hf" else len(feedparser.parse(data, **FEEDPARSER_OPTIONS).entries)
    return entries, clock.stop()


def bench_config(folder: Path, files: list[tuple[str, Path]]):
    from digest.config import load_config

    sources = [
        f'[[sources]]\nname = "{path.stem}"\nkind = "{KINDS[fmt]}"\nurl = "{path}"\nquery = "cat:cs.CL"\nmax_results = 100000\n'
        for fmt, path in files
    ]
    config_path = folder / "config.toml"
    config_path.write_text('[database]\nurl = "sqlite:///bench.db"\n\n' + "\n".join(sources), encoding="utf-8")
    return load_config(config_path)


def timed_ingest(config, engine) -> tuple[object, Timing]:
    from digest.pipeline import ingest  # imported (outside the timing) by main

    clock = Timing.start()
    report = ingest(config, engine)
    return report, clock.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--per-file", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/digest-bench"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import feedparser  # noqa: F401  (imports are not part of what is timed)

    import digest.pipeline  # noqa: F401
    from digest.store import open_database

    shutil.rmtree(args.dir, ignore_errors=True)
    files = write_feeds(args.dir / "feeds", args.entries, args.per_file)
    config = bench_config(args.dir, files)
    engine = open_database(config.database_url)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    print(f"{len(files)} files, {args.entries} entries ({', '.join(sorted({fmt for fmt, _ in files}))})")

    # On a shared machine each ingest is compared with the bare parses run just before and just after it.
    entries, bare_before = bare_parse(files)
    report, first = timed_ingest(config, engine)
    _, bare_between = bare_parse(files)
    again, second = timed_ingest(config, engine)
    _, bare_after = bare_parse(files)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def ratio(step: Timing, before: Timing, after: Timing, kind: str) -> float:
        return (getattr(before, kind) + getattr(after, kind)) / 2 / getattr(step, kind)

    print("bare parse (feedparser for XML, json.loads for JSON), before/between/after: "
          + ", ".join(f"{entries / t.wall:,.0f}" for t in (bare_before, bare_between, bare_after)) + " entries/s")
    for label, step, result, before, after in (
        ("ingest into fresh SQLite", first, report, bare_before, bare_between),
        ("re-ingest               ", second, again, bare_between, bare_after),
    ):
        print(f"{label}: {result.new:>5} new in {step.wall:.2f} s = {entries / step.wall:,.0f} entries/s;"
              f" ratio to bare parse {ratio(step, before, after, 'wall'):.2f} (wall), {ratio(step, before, after, 'cpu'):.2f} (CPU)")
    print(f"peak memory (max RSS of the process): {peak_mb:.0f} MB")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    failed = [str(result) for result in report.results + again.results if result.failed]
    checks = {
        ">= 2,500 entries/s": entries / first.wall >= 2500,
        "ratio >= 0.65 (CPU)": ratio(first, bare_before, bare_between, "cpu") >= 0.65,
        "peak < 500 MB": peak_mb < 500,
        "re-ingest stored nothing new": again.new == 0 and report.new == entries,
        "re-ingest at least as fast (CPU)": second.cpu <= first.cpu,
        "no source failed": not failed,
    }
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'MISSED'}] {name}")
    if failed:
        print("failures:", *failed, sep="\n  ")


if __name__ == "__main__":
    main()
