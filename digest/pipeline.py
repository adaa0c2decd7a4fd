"""Where the stages meet: each function here runs one step of the pipeline end to end (store in, store out),
for the CLI, the scheduler and the demo to call."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import Engine

from digest.config import Config
from digest.models import Paper
from digest.store import session_scope
from digest.store import themes as store_themes
from digest.summarise import SummariseReport, summarise_papers
from digest.themes import assign_themes, rank_theme, themes_hash


# --- Themes and summaries ----------------------------------------------------------------------------------


def assign_and_summarise(
    config: Config, engine: Engine, papers: list[Paper] | None = None, progress: bool = False
) -> SummariseReport:
    """Assign themes to the papers that lack a current assignment and write the TL;DRs they lack.
    `papers` None means every stored paper."""
    with session_scope(engine) as session:
        needing = store_themes.papers_needing_assignment(session, themes_hash(config))
        if papers is not None:
            wanted = {p.id for p in papers}
            needing = [p for p in needing if p.id in wanted]
        assign_themes(config, session, needing)
        if papers is None:
            papers = store_themes.select_papers(session)
    return summarise_with_progress(config, engine, papers, force=False, progress=progress)


def summarise(
    config: Config,
    engine: Engine,
    since: datetime | None = None,
    theme: str | None = None,
    limit: int | None = None,
    force: bool = False,
    progress: bool = False,
) -> SummariseReport:
    """`digest summarise`: assign themes where needed, then write TL;DRs for the papers first seen since `since`
    (in `theme`, newest first, at most `limit`); `force` rewrites them even if stored ones are current."""
    with session_scope(engine) as session:
        assign_themes(config, session, store_themes.papers_needing_assignment(session, themes_hash(config)))
        papers = store_themes.select_papers(session, since=since, theme=theme, limit=limit)
    return summarise_with_progress(config, engine, papers, force=force, progress=progress)


def summarise_with_progress(
    config: Config, engine: Engine, papers: list[Paper], force: bool, progress: bool
) -> SummariseReport:
    if not progress:
        return summarise_papers(config, engine, papers, force=force)
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} papers/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("Summarising", total=len(papers), rate="-")
        started = time.monotonic()

        def advance(done: int) -> None:
            bar.advance(task, done)
            finished = bar.tasks[task].completed
            bar.update(task, rate=f"{finished / max(time.monotonic() - started, 1e-6):.1f}")

        return summarise_papers(config, engine, papers, force=force, on_progress=advance)


def theme_listing(config: Config, engine: Engine, top: int = 3, now: datetime | None = None) -> list[dict]:
    """`digest themes`: each theme (the Other bucket last) with its paper count and top papers as stored."""
    now = now or datetime.now(timezone.utc)
    names = [t.name for t in config.themes] + ([config.assign.other_name] if config.assign.other_bucket else [])
    listing = []
    with session_scope(engine) as session:
        counts = store_themes.theme_paper_counts(session)
        for name in names:
            ranked = rank_theme(config, name, store_themes.theme_candidates(session, name), now)[:top]
            tldrs = store_themes.tldrs_for(session, [r.paper.id for r in ranked], config)
            papers = [
                {"paper_id": r.paper.id, "title": r.paper.title, "score": r.score, "reason": r.reason,
                 "tldr": tldrs[r.paper.id].text if r.paper.id in tldrs else None}
                for r in ranked
            ]
            listing.append({"theme": name, "papers": counts.get(name, 0), "top": papers})
    return listing
