"""Editions, the stage between summarise and render: a period's dates and paper window, which of its papers go
in (ranked per theme, capped, de-duplicated), each theme's overview, why an empty edition is empty, and the
stored snapshot with its content hash.

Dates are days in `[digest] timezone`. A daily edition for day D covers the papers first seen on D, plus those
first seen on D-1 after D-1's edition was built (a 07:00 edition cannot hold the afternoon's papers, so the
next one carries them). A weekly edition for day D covers the seven days before the latest `[edition]
weekly_day` on or before D: with the default "mon", Monday to Sunday of the week before.

Building reads everything it needs in one short session, writes the missing overviews outside any transaction
(a model may take seconds, and on SQLite an open transaction holds the write lock that sign-ups, ingest and
sends wait for), then stores the overviews and the edition in a second short session. The snapshot holds
everything the outputs show (titles, links, TL;DRs, overviews), so an edition reads the same later and its hash
changes only when that content does. Turning it into HTML, text and Markdown is `digest.render`'s job.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from digest import summarise
from digest.config import Config, ThemeSettings
from digest.errors import ConfigError, SummariserError
from digest.models import Edition, FetchLog, Paper, Summary, ThemeAssignment, utcnow
from digest.store import editions as store
from digest.store import session_scope
from digest.store.papers import papers_first_seen
from digest.store.summaries import save_summary, tldrs_for
from digest.store.themes import assignments_for
from digest.summarise import Task, current_overviews, overview_items, overview_task, write_overview
from digest.themes import RankedPaper, rank_theme

log = logging.getLogger(__name__)

PERIODS = ("daily", "weekly")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
REPLACEMENT_TYPES = frozenset({"replace", "replace-cross"})
HF_PAPER_URL = "https://huggingface.co/papers/{arxiv_id}"
OUTPUT_SUFFIXES = {"html": ".html", "text": ".txt", "md": ".md"}

# Renders a ready edition's stored outputs: (email HTML, plain text, Markdown). `digest.pipeline` passes
# `digest.render.edition_outputs`, so this stage never imports the one to its right.
RenderOutputs = Callable[[Edition], tuple[str, str, str]]


@dataclass(frozen=True)
class Period:
    """An edition's period: `start` and `end` are local days, both included."""

    name: str
    start: date
    end: date

    def bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """The UTC instants [start of `start`, start of the day after `end`) in timezone `tz`."""
        first = datetime.combine(self.start, time(), tz)
        after = datetime.combine(self.end + timedelta(days=1), time(), tz)
        return first.astimezone(timezone.utc), after.astimezone(timezone.utc)

    def days(self) -> list[date]:
        return [self.start + timedelta(days=offset) for offset in range((self.end - self.start).days + 1)]


@dataclass(frozen=True)
class Window:
    """The papers an edition may take: those first seen in [start, end) (UTC instants)."""

    period: Period
    start: datetime
    end: datetime


def edition_period(config: Config, period: str, day: date | None = None) -> Period:
    """The period of the `period` edition for `day` (default: today in the configured timezone)."""
    day = day or datetime.now(config.timezone).date()
    if period == "daily":
        return Period("daily", day, day)
    if period == "weekly":
        days_back = (day.weekday() - WEEKDAYS.index(config.edition.weekly_day)) % 7
        anchor = day - timedelta(days=days_back)
        return Period("weekly", anchor - timedelta(days=7), anchor - timedelta(days=1))
    raise ConfigError(f"unknown edition period {period!r} (expected one of: {', '.join(PERIODS)})")


def edition_window(config: Config, engine: Engine, period_name: str, day: date | None = None) -> Window:
    """The period of the `period_name` edition for `day` and the window of first-seen times it takes: the period's
    days, reaching back for a daily edition to when the previous day's edition was built (papers seen after that
    missed it)."""
    period = edition_period(config, period_name, day)
    start, end = period.bounds(config.timezone)
    if period.name == "daily":
        with session_scope(engine) as session:
            previous = store.find_edition(session, "daily", period.start - timedelta(days=1))
        if previous is not None and previous.built_at < start:
            start = max(previous.built_at, start - timedelta(days=1))
    return Window(period, start, end)


def window_papers(config: Config, engine: Engine, window: Window) -> list[Paper]:
    """The papers the window's edition may include (replacement listings dropped unless configured)."""
    with session_scope(engine) as session:
        return eligible_papers(config, papers_first_seen(session, window.start, window.end))


def date_range_label(start: date, end: date) -> str:
    """"Monday 23 November 2026", or "16–22 November 2026" / "30 November – 6 December 2026" for a range."""
    if start == end:
        return f"{start:%A} {start.day} {start:%B %Y}"
    if (start.year, start.month) == (end.year, end.month):
        return f"{start.day}–{end.day} {end:%B %Y}"
    if start.year == end.year:
        return f"{start.day} {start:%B} – {end.day} {end:%B %Y}"
    return f"{start.day} {start:%B %Y} – {end.day} {end:%B %Y}"


def edition_title(config: Config, period: Period) -> str:
    label = date_range_label(period.start, period.end)
    return f"{config.digest.title}: {label}" if period.name == "daily" else f"{config.digest.title}: week of {label}"


def edition_file_name(edition: Edition, suffix: str) -> str:
    """`<period>-<start>.<ext>`: the name of every file made from an edition (its outputs, its archive page)."""
    return f"{edition.period}-{edition.start_date.isoformat()}{suffix}"


def write_outputs(edition: Edition, formats: list[str], out_dir: Path) -> list[Path]:
    """Write the stored outputs of a ready edition (`html`, `text`, `md`) as files in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = {"html": edition.html, "text": edition.text, "md": edition.markdown}
    paths = []
    for name in formats:
        path = out_dir / edition_file_name(edition, OUTPUT_SUFFIXES[name])
        path.write_text(contents[name], encoding="utf-8")
        paths.append(path)
    return paths


# --- Selection ---------------------------------------------------------------------------------------------


def theme_limits(config: Config) -> dict[str, int]:
    """`max_papers` per theme; the Other bucket gets the default of a theme."""
    limits = {theme.name: theme.max_papers for theme in config.themes}
    return {name: limits.get(name, ThemeSettings.model_fields["max_papers"].default) for name in config.theme_names}


def eligible_papers(config: Config, papers: list[Paper]) -> list[Paper]:
    """Drop arXiv replacement listings (new versions of old papers) unless `include_replacements` is on."""
    if config.edition.include_replacements:
        return papers
    return [paper for paper in papers if paper.announce_type not in REPLACEMENT_TYPES]


def rank_by_theme(
    config: Config, papers: list[Paper], assignments: dict[int, list[ThemeAssignment]], now: datetime
) -> dict[str, list[RankedPaper]]:
    candidates: dict[str, list[tuple[Paper, ThemeAssignment]]] = defaultdict(list)
    for paper in papers:
        for assignment in assignments.get(paper.id, []):
            candidates[assignment.theme].append((paper, assignment))
    return {name: rank_theme(config, name, candidates[name], now) for name in config.theme_names if candidates[name]}


def choose_papers(config: Config, ranked: dict[str, list[RankedPaper]]) -> dict[str, list[RankedPaper]]:
    """At most `max_papers` per theme, best first. Without `allow_repeats` each paper appears once: pairs are
    placed best score first, so a paper lands in the theme where it scores highest that still has room."""
    order = {name: index for index, name in enumerate(ranked)}
    pairs = sorted(
        ((name, item) for name, items in ranked.items() for item in items),
        key=lambda pair: (-pair[1].score, order[pair[0]], pair[1].paper.id),
    )
    limits = theme_limits(config)
    chosen: dict[str, list[RankedPaper]] = {name: [] for name in ranked}
    placed: set[int] = set()
    for name, item in pairs:
        if len(chosen[name]) >= limits[name]:
            continue
        if item.paper.id in placed and not config.edition.allow_repeats:
            continue
        chosen[name].append(item)
        placed.add(item.paper.id)
    return {name: items for name, items in chosen.items() if items}


# --- Why an edition is empty -------------------------------------------------------------------------------


def empty_reason(period: Period, seen: list[Paper], eligible: list[Paper], fetches: list[FetchLog]) -> str:
    """A sentence saying why there is nothing to send: source failures, a weekend, quiet feeds or no matches."""
    if eligible:
        return f"no matches: {len(eligible)} new paper(s), none in a configured theme"
    if seen:
        return f"nothing new: {len(seen)} paper(s) were only new versions of older papers (include_replacements is off)"
    failures = failed_sources(fetches)
    if failures:
        return "source failures: " + "; ".join(failures)
    if all(day.weekday() >= 5 for day in period.days()):
        return "nothing new: weekend (arXiv announces no new papers on Saturdays and Sundays)"
    if fetches:
        return "nothing new: the sources reported empty or unchanged feeds (a holiday?)"
    return "nothing new: no source was fetched in this period (run `digest ingest`)"


def failed_sources(fetches: list[FetchLog]) -> list[str]:
    """`source (error)` for each source whose fetches in the period all failed."""
    by_source: dict[str, list[FetchLog]] = defaultdict(list)
    for fetch in fetches:
        by_source[fetch.source].append(fetch)
    return [
        f"{source} ({rows[-1].error or 'error'})"
        for source, rows in by_source.items()
        if all(row.status == "error" for row in rows)
    ]


# --- Content snapshot --------------------------------------------------------------------------------------


def paper_entry(item: RankedPaper, tldr: Summary | None) -> dict:
    paper = item.paper
    has_hf_page = paper.arxiv_id and paper.upvotes is not None
    return {
        "paper_id": paper.id,
        "score": item.score,
        "reason": item.reason,
        "title": paper.title,
        "authors": list(paper.authors or []),
        "abs_url": paper.abs_url,
        "pdf_url": paper.pdf_url,
        "code_url": paper.code_url or paper.github_repo,
        "github_stars": paper.github_stars,
        "hf_url": HF_PAPER_URL.format(arxiv_id=paper.arxiv_id) if has_hf_page else None,
        "upvotes": paper.upvotes,
        "comments": paper.num_comments,
        "tldr": tldr.text if tldr else "",
    }


def overview_entry(overview: Summary | None) -> dict | None:
    if overview is None or not overview.text.strip():
        return None
    return {"text": overview.text, "method": overview.method, "cited": list(overview.cited_paper_ids or [])}


def edition_content(
    period: Period,
    chosen: dict[str, list[RankedPaper]],
    overviews: dict[str, Summary],
    tldrs: dict[int, Summary],
) -> dict:
    themes = [
        {
            "name": name,
            "overview": overview_entry(overviews.get(name)),
            "papers": [paper_entry(item, tldrs.get(item.paper.id)) for item in items],
        }
        for name, items in chosen.items()
    ]
    return {
        "period": period.name,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "paper_count": sum(len(theme["papers"]) for theme in themes),
        "themes": themes,
    }


def content_hash(content: dict) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- Building ----------------------------------------------------------------------------------------------


@dataclass
class Selection:
    """What building an edition reads from the store: the chosen papers per theme with their TL;DRs, each
    theme's overview task and the overviews already stored for them, or why the edition is empty; and the
    edition stored for this period so far."""

    chosen: dict[str, list[RankedPaper]]
    tldrs: dict[int, Summary]
    overview_tasks: dict[str, Task]
    stored_overviews: dict[str, Summary]
    empty_reason: str | None
    stored: Edition | None


def select(config: Config, session: Session, window: Window) -> Selection:
    """Choose the window's papers and look up what the edition needs of them."""
    period = window.period
    stored = store.find_edition(session, period.name, period.start)
    seen = papers_first_seen(session, window.start, window.end)
    papers = eligible_papers(config, seen)
    ranked = rank_by_theme(config, papers, assignments_for(session, [paper.id for paper in papers]), now=window.end)
    chosen = choose_papers(config, ranked)
    if not chosen:
        reason = empty_reason(period, seen, papers, store.fetches_between(session, window.start, window.end))
        return Selection({}, {}, {}, {}, reason, stored)
    tldrs = tldrs_for(session, [item.paper.id for items in chosen.values() for item in items], config)
    tasks = {name: overview_task(name, theme_items(items, tldrs)) for name, items in chosen.items()}
    return Selection(chosen, tldrs, tasks, current_overviews(session, config, tasks), None, stored)


def theme_items(items: list[RankedPaper], tldrs: dict[int, Summary]) -> list:
    """What a theme's overview draws on: its chosen papers with their TL;DRs and the keywords they matched."""
    keywords = {item.paper.id: list(item.assignment.matched_keywords or []) for item in items}
    return overview_items([item.paper for item in items], tldrs, keywords)


def write_overviews(config: Config, tasks: dict[str, Task]) -> dict[str, Summary]:
    """New overviews for `tasks`, by theme, written together outside any transaction. When the summariser fails,
    each theme is tried on its own, and a theme whose summariser still fails gets none (it then shows its papers
    only)."""
    try:
        return summarise.write_overviews(config, tasks)
    except SummariserError as exc:
        log.warning("overviews written together failed (%s); trying each theme on its own", exc)
    written = {}
    for name, task in tasks.items():
        try:
            written[name] = write_overview(config, name, task)
        except SummariserError as exc:
            log.warning("no overview for theme %r: %s", name, exc)
    return written


def build(config: Config, engine: Engine, window: Window, render: RenderOutputs, rebuild: bool = False) -> Edition:
    """Build the window's edition and store it with its outputs from `render`. An unchanged edition (same content
    hash) is returned as stored unless `rebuild` asks to render and store it again."""
    with session_scope(engine) as session:
        selection = select(config, session, window)
    missing = {name: task for name, task in selection.overview_tasks.items() if name not in selection.stored_overviews}
    fresh = write_overviews(config, missing)
    content = edition_content(window.period, selection.chosen, selection.stored_overviews | fresh, selection.tldrs)
    reason = selection.empty_reason
    hash_ = content_hash({**content, "empty_reason": reason})
    stored = selection.stored
    if stored is not None and stored.content_hash == hash_ and not rebuild and not fresh:
        return stored
    edition = Edition(
        period=window.period.name, start_date=window.period.start, end_date=window.period.end,
        title=edition_title(config, window.period), status="empty" if reason else "ready", empty_reason=reason,
        content=content, content_hash=hash_, built_at=utcnow(),
    )
    edition.html, edition.text, edition.markdown = render(edition) if reason is None else ("", "", "")
    with session_scope(engine) as session:
        for overview in fresh.values():
            save_summary(session, overview)
        return store.save_edition(session, edition)
