"""Where the stages meet: each function here runs one step of the pipeline end to end (store in, store out),
for the CLI, the scheduler and the demo to call."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import partial
from pathlib import Path
from typing import TextIO

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from digest import editions
from digest.config import Config, IngestSettings, SourceSettings
from digest.deliver import subscriber_csv
from digest.deliver.outbox import Composer, SendProgress, SendReport, preview_send, send_queued
from digest.errors import DigestError, RenderError, SubscriberError
from digest.models import Edition, Paper, utcnow
from digest.render import EditionRenderer, archive, edition_outputs
from digest.sources import Listing, read_source
from digest.sources.fetch import Fetcher, Validators
from digest.store import editions as store_editions
from digest.store import outbox as store_outbox
from digest.store import papers as store_papers
from digest.store import session_scope
from digest.store import subscribers as store_subscribers
from digest.store import summaries as store_summaries
from digest.store import themes as store_themes
from digest.summarise import SummariseReport, summarise_papers
from digest.themes import assign_themes, rank_theme, themes_hash

# How long work reports progress: `on_progress(done, total)`, called as it goes (the CLI draws the bars).
OnProgress = Callable[[int, int], None]


# --- Themes and summaries ----------------------------------------------------------------------------------


def assign_and_summarise(
    config: Config, engine: Engine, papers: list[Paper] | None = None, on_progress: OnProgress | None = None
) -> SummariseReport:
    """Assign themes to the papers that lack a current assignment and write the TL;DRs they lack.
    `papers` None means every stored paper. `on_progress(done, total)` counts the TL;DRs written."""
    with session_scope(engine) as session:
        needing = store_themes.papers_needing_assignment(session, themes_hash(config))
        if papers is None:
            papers = store_papers.papers_first_seen(session, newest_first=True)
    wanted = {p.id for p in papers}
    assign_themes(config, engine, [p for p in needing if p.id in wanted])
    return summarise_papers(config, engine, papers, on_progress=on_progress)


def summarise(
    config: Config,
    engine: Engine,
    since: datetime | None = None,
    theme: str | None = None,
    limit: int | None = None,
    force: bool = False,
    on_progress: OnProgress | None = None,
) -> SummariseReport:
    """`digest summarise`: assign themes where needed, then write TL;DRs for the papers first seen since `since`
    (in `theme`, newest first, at most `limit`); `force` rewrites them even if stored ones are current.
    `on_progress(done, total)` counts the TL;DRs written."""
    with session_scope(engine) as session:
        needing = store_themes.papers_needing_assignment(session, themes_hash(config))
    assign_themes(config, engine, needing)
    with session_scope(engine) as session:
        papers = store_papers.papers_first_seen(session, since, theme=theme, limit=limit, newest_first=True)
    return summarise_papers(config, engine, papers, force=force, on_progress=on_progress)


def theme_listing(config: Config, engine: Engine, top: int = 3, now: datetime | None = None) -> list[dict]:
    """`digest themes`: each theme (the Other bucket last) with its paper count and top papers as stored."""
    now = now or datetime.now(timezone.utc)
    listing = []
    with session_scope(engine) as session:
        counts = store_themes.theme_paper_counts(session)
        for name in config.theme_names:
            ranked = rank_theme(config, name, store_themes.theme_candidates(session, name), now)[:top]
            tldrs = store_summaries.tldrs_for(session, [r.paper.id for r in ranked], config)
            papers = [
                {"paper_id": r.paper.id, "title": r.paper.title, "score": r.score, "reason": r.reason,
                 "tldr": tldrs[r.paper.id].text if r.paper.id in tldrs else None}
                for r in ranked
            ]
            listing.append({"theme": name, "papers": counts.get(name, 0), "top": papers})
    return listing


# --- Editions ----------------------------------------------------------------------------------------------


def build_edition(config: Config, engine: Engine, period: str, day: date | None = None, rebuild: bool = False) -> Edition:
    """Theme and summarise the period's new papers where needed, then build its edition (`daily` or `weekly`,
    for `day`, default today) and refresh the web archive its emails link to. An unchanged edition is returned
    as stored unless `rebuild` is set."""
    window = editions.edition_window(config, engine, period, day)
    assign_and_summarise(config, engine, editions.window_papers(config, engine, window))
    edition = editions.build(config, engine, window, partial(edition_outputs, config), rebuild)
    if edition.status == "ready":
        write_archive(config, engine, archive.archive_folder(config))
    return edition


def edition_listing(engine: Engine) -> list[dict]:
    """`digest editions`: every stored edition, newest first, with its status and delivery tallies."""
    with session_scope(engine) as session:
        return store_editions.edition_records(session)


def edition_renderer(config: Config, engine: Engine, edition_id: int) -> EditionRenderer:
    """A renderer for a stored edition; its `.email(themes, links)` personalises cheaply per reader."""
    with session_scope(engine) as session:
        edition = store_editions.get_edition(session, edition_id)
    if edition is None:
        raise RenderError(f"no edition with id {edition_id}")
    return EditionRenderer(config, edition)


def latest_edition(config: Config, engine: Engine, period: str = "daily", day: date | None = None) -> Edition:
    """Build the period's edition for `day` (default today); when it is empty, the newest edition with papers.
    RenderError when there is none at all."""
    edition = build_edition(config, engine, period, day)
    if edition.status == "ready":
        return edition
    with session_scope(engine) as session:
        ready = store_editions.ready_editions(session)
    if not ready:
        raise RenderError(f"no edition to show yet: {edition.empty_reason}")
    return ready[0]


def write_archive(config: Config, engine: Engine, out_dir: Path) -> Path:
    """Write the static web archive of every edition with papers (pages, feed.xml, feed.json); return index.html."""
    with session_scope(engine) as session:
        ready = store_editions.ready_editions(session)
    return archive.write_archive(config, ready, out_dir)


# --- Delivery ----------------------------------------------------------------------------------------------


def edition_to_send(engine: Engine, edition_id: int | None, period: str | None) -> int:
    """The edition `digest send` means: the one named, else the newest ready one of the period."""
    with session_scope(engine) as session:
        return store_outbox.edition_to_send(session, edition_id, period)


def send_edition(
    config: Config, engine: Engine, edition_id: int, dry_run: bool = False, limit: int | None = None,
    on_progress: SendProgress | None = None, workers: int = 1,
) -> SendReport:
    """Send one edition to each eligible subscriber exactly once (see `digest.deliver.outbox` for the bound
    after a crash), from `workers` sender processes sharing its outbox; `dry_run` builds every message and
    records nothing. `on_progress(done, due)` is called as messages go out."""
    with session_scope(engine) as session:
        edition = session.get(Edition, edition_id)
    if edition is None:
        raise RenderError(f"no edition with id {edition_id}")
    if dry_run:
        return preview_send(config, engine, edition, edition_composer(config, engine, edition_id), limit)
    return send_queued(config, engine, edition, edition_composer, limit, on_progress, workers)


def edition_composer(config: Config, engine: Engine, edition_id: int) -> Composer:
    """What builds each reader's message for a stored edition (each sender process makes its own)."""
    renderer = edition_renderer(config, engine, edition_id)
    return Composer(config, renderer, renderer.public_links.web_url)


def skip_unsent(engine: Engine, edition_id: int, reason: str) -> int:
    """Mark the edition's messages not yet sent or claimed as skipped, with the reason (a newer edition
    superseded it); returns how many."""
    with session_scope(engine) as session:
        return store_outbox.skip_unsent(session, edition_id, reason)


def delivery_listing(engine: Engine, edition_id: int | None = None) -> list[dict]:
    """`digest deliveries`: what was sent to whom, oldest first."""
    with session_scope(engine) as session:
        return list(store_outbox.delivery_records(session, edition_id))


# --- Subscribers -------------------------------------------------------------------------------------------


def add_subscriber(
    config: Config, engine: Engine, email: str, themes: list[str], frequency: str, confirmed: bool = False
) -> dict:
    """`digest subscribers add`: a new subscriber, pending until they confirm unless `confirmed`; returns its
    record. SubscriberError for a bad or known address, an unknown theme or frequency."""
    chosen = store_subscribers.check_choices(themes, frequency, config.theme_names)
    with session_scope(engine) as session:
        subscriber = store_subscribers.add_subscriber(
            session, email, chosen, frequency, "confirmed" if confirmed else "pending"
        )
        return store_subscribers.subscriber_record(subscriber)


def subscriber_listing(engine: Engine) -> list[dict]:
    """`digest subscribers list`: every subscriber's record, by id."""
    with session_scope(engine) as session:
        return [store_subscribers.subscriber_record(s) for s in store_subscribers.iter_subscribers(session)]


def remove_subscriber(engine: Engine, email: str) -> None:
    """`digest subscribers remove`: delete the subscriber and their delivery history."""
    with session_scope(engine) as session:
        store_subscribers.remove_subscriber(session, email)


def import_subscribers(config: Config, engine: Engine, path: Path) -> int:
    """`digest subscribers import`: add every row of a CSV file, or none; return how many. SubscriberError
    naming the file and each bad line."""
    try:
        rows = subscriber_csv.read_csv(path, config.theme_names)
        with session_scope(engine) as session:
            return subscriber_csv.import_rows(session, rows)
    except SubscriberError as exc:
        raise SubscriberError(f"{path}: {exc}") from None


def export_subscribers(engine: Engine, out: TextIO) -> int:
    """`digest subscribers export`: every subscriber as CSV (the format `import` reads); return how many."""
    return subscriber_csv.write_csv(subscriber_listing(engine), out)


# --- Ingest ------------------------------------------------------------------------------------------------


@dataclass
class SourceResult:
    """How one source's ingest went. `status`: ok, empty, not-modified, partial (some entries invalid, the rest
    stored) or error (the source failed; anything recovered from a broken feed is still stored)."""

    source: str
    status: str
    seen: int = 0
    new: int = 0
    updated: int = 0
    invalid: int = 0
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "error"

    def __str__(self) -> str:
        return f"{self.source}: {self.error}" if self.error else f"{self.source}: {self.status}, {self.new} new"


@dataclass
class IngestReport:
    results: list[SourceResult] = field(default_factory=list)

    @property
    def failures(self) -> list[SourceResult]:
        return [result for result in self.results if result.failed]

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    @property
    def new(self) -> int:
        return sum(result.new for result in self.results)


def ingest(
    config: Config, engine: Engine, source_names: list[str] | None = None, on_progress: OnProgress | None = None
) -> IngestReport:
    """Fetch every enabled source (or the named ones) and store what is new. Each source is independent:
    one that fails is recorded in the fetch log and reported, and the others still run. `on_progress(done,
    total)` counts the sources stored.

    Parsing is the costly part, so sources are fetched and parsed in worker processes (one per CPU) while this
    process stores the ones already read. arXiv API sources are read here, one request at a time, to keep
    their pacing."""
    sources = [config.source(name) for name in source_names] if source_names else [s for s in config.sources if s.enabled]
    with session_scope(engine) as session:
        validators = {s.name: store_papers.saved_validators(session, s.name, s.url) for s in sources}
    today = utcnow().astimezone(config.timezone).date()
    report = IngestReport()
    with Fetcher(config.ingest, config.base_dir) as fetcher, reader_pool(sources) as pool:
        reads = [(source, utcnow(), start_read(pool, fetcher, config, source, validators[source.name], today))
                 for source in sources]
        for done, (source, started, read) in enumerate(reads):
            if on_progress:
                on_progress(done, len(reads))
            report.results.append(ingest_source(engine, source, started, read))
    if on_progress:
        on_progress(len(reads), len(reads))
    return report


def reader_pool(sources: list[SourceSettings]) -> ProcessPoolExecutor | nullcontext:
    """Worker processes for reading sources, when there is more than one CPU and more than one source to read."""
    parallel = sum(source.kind != "arxiv-api" for source in sources)
    workers = min(os.cpu_count() or 1, parallel)
    return ProcessPoolExecutor(max_workers=workers) if workers > 1 else nullcontext()


def start_read(
    pool: ProcessPoolExecutor | None, fetcher: Fetcher, config: Config, source: SourceSettings,
    validators: Validators, today: date,
) -> Callable[[], Listing]:
    """Begin reading `source`; the returned function waits for its Listing (or raises its FeedError)."""
    if pool is None or source.kind == "arxiv-api":
        return partial(read_source, source, fetcher, validators, today)
    return pool.submit(read_with_own_fetcher, config.ingest, config.base_dir, source, validators, today).result


def read_with_own_fetcher(
    settings: IngestSettings, base_dir: Path, source: SourceSettings, validators: Validators, today: date
) -> Listing:
    """`read_source` in a worker process, which needs its own HTTP client."""
    with Fetcher(settings, base_dir) as fetcher:
        return read_source(source, fetcher, validators, today)


def ingest_source(engine: Engine, source: SourceSettings, started: datetime, read: Callable[[], Listing]) -> SourceResult:
    """Wait for one source's listing and store its entries together with its fetch-log row (and so its ETag) in
    one transaction. A failure is recorded in a transaction of its own, without an ETag."""
    url = source.url
    try:
        listing = read()
        with session_scope(engine) as session:
            counts = store_papers.store_entries(session, source.name, listing.entries, started)
            result = listing_result(source.name, listing, counts)
            store_papers.record_fetch(session, source.name, url, started, result.status, **fetch_fields(listing, result))
        return result
    except (DigestError, SQLAlchemyError, BrokenExecutor) as exc:
        result = SourceResult(source.name, "error", error=error_message(exc))
        with session_scope(engine) as session:
            store_papers.record_fetch(session, source.name, url, started, "error", finished_at=utcnow(), error=result.error)
        return result


def listing_result(name: str, listing: Listing, counts: store_papers.StoredCounts) -> SourceResult:
    """The result of a read that produced a listing: its status and counts, and why it is not `ok`."""
    invalid = len(listing.invalid)
    if listing.problem:
        status, error = "error", listing.problem
    elif listing.not_modified:
        status, error = "not-modified", None
    elif invalid:
        status, error = "partial", f"{invalid} invalid entries skipped ({'; '.join(listing.invalid[:3])})"
    else:
        status, error = ("ok" if listing.seen else "empty"), None
    return SourceResult(name, status, listing.seen, counts.new, counts.updated, invalid, error)


def fetch_fields(listing: Listing, result: SourceResult) -> dict:
    """Fetch-log columns for a listing. A broken feed keeps no ETag, so the next run fetches it in full."""
    keep_validators = not result.failed
    return {
        "finished_at": utcnow(),
        "http_status": listing.http_status,
        "etag": listing.etag if keep_validators else None,
        "last_modified": listing.last_modified if keep_validators else None,
        "entries_seen": result.seen,
        "entries_new": result.new,
        "entries_updated": result.updated,
        "entries_invalid": result.invalid,
        "error": result.error,
    }


def error_message(exc: Exception) -> str:
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {getattr(exc, 'orig', None) or exc}"
    if isinstance(exc, BrokenExecutor):
        return f"the process reading this source died: {exc}"
    return str(exc)


def paper_listing(engine: Engine, since: datetime | None = None, source: str | None = None) -> list[dict]:
    """`digest papers`: the stored papers as dicts, newest first. Later stages add their keys here."""
    with session_scope(engine) as session:
        papers = store_papers.papers_first_seen(session, since, source=source, newest_first=True)
        themes = store_themes.assignments_for(session, [p.id for p in papers])
        tldrs = store_summaries.newest_tldrs(session, [p.id for p in papers])
        return [
            store_papers.paper_to_dict(paper)
            | {
                "themes": [{"name": a.theme, "reason": a.reason, "score": a.score} for a in themes.get(paper.id, [])],
                "tldr": tldrs[paper.id].text if paper.id in tldrs else None,
            }
            for paper in papers
        ]
