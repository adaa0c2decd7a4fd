"""Queries for theme assignments, paper embeddings and summaries (TL;DRs and theme overviews)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from digest.config import Config
from digest.models import Embedding, Paper, Summary, ThemeAssignment
from digest.summarise.prompts import summary_identity


def embeddings_for(session: Session, paper_ids: Iterable[int], model: str) -> dict[int, Embedding]:
    ids = list(paper_ids)
    rows = session.scalars(select(Embedding).where(Embedding.model == model, Embedding.paper_id.in_(ids)))
    return {row.paper_id: row for row in rows}


def save_embedding(session: Session, paper_id: int, model: str, text_hash: str, vector: bytes, dim: int) -> None:
    """Insert or replace one paper's embedding for `model`."""
    session.merge(Embedding(paper_id=paper_id, model=model, text_hash=text_hash, vector=vector, dim=dim))


def assignments_for(session: Session, paper_ids: Iterable[int]) -> dict[int, list[ThemeAssignment]]:
    """Each paper's theme assignments, best score first (papers with none are missing)."""
    ids = list(paper_ids)
    query = select(ThemeAssignment).where(ThemeAssignment.paper_id.in_(ids)).order_by(ThemeAssignment.score.desc())
    found: dict[int, list[ThemeAssignment]] = defaultdict(list)
    for row in session.scalars(query):
        found[row.paper_id].append(row)
    return dict(found)


def replace_assignments(session: Session, paper_ids: Iterable[int], assignments: list[ThemeAssignment]) -> None:
    """Drop the papers' old assignments and store the new ones in their place."""
    ids = list(paper_ids)
    session.execute(delete(ThemeAssignment).where(ThemeAssignment.paper_id.in_(ids)))
    session.flush()
    session.add_all(assignments)


def papers_needing_assignment(session: Session, themes_hash: str) -> list[Paper]:
    """Papers not yet assigned under the current themes (a changed `[[themes]]` reassigns everything)."""
    current = select(ThemeAssignment.paper_id).where(ThemeAssignment.themes_hash == themes_hash)
    return list(session.scalars(select(Paper).where(Paper.id.not_in(current)).order_by(Paper.id)))


def theme_paper_counts(session: Session) -> dict[str, int]:
    query = select(ThemeAssignment.theme, func.count()).group_by(ThemeAssignment.theme)
    return {theme: count for theme, count in session.execute(query)}


def theme_candidates(session: Session, theme: str) -> list[tuple[Paper, ThemeAssignment]]:
    """Every paper assigned to `theme`, with its assignment."""
    query = select(Paper, ThemeAssignment).join(ThemeAssignment).where(ThemeAssignment.theme == theme)
    return [(paper, assignment) for paper, assignment in session.execute(query)]


def select_papers(
    session: Session, since: datetime | None = None, theme: str | None = None, limit: int | None = None
) -> list[Paper]:
    """Papers first seen since `since`, in `theme` if given, newest first, at most `limit`."""
    query = select(Paper).order_by(Paper.first_seen_at.desc(), Paper.id.desc())
    if since is not None:
        query = query.where(Paper.first_seen_at >= since)
    if theme is not None:
        query = query.where(Paper.id.in_(select(ThemeAssignment.paper_id).where(ThemeAssignment.theme == theme)))
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def find_summaries(
    session: Session, kind: str, subjects: Iterable[str], identity: tuple[str, str, str]
) -> dict[str, list[Summary]]:
    """Stored summaries of `kind` for `subjects` made with `identity` (model, backend, prompt version),
    newest first per subject."""
    model, backend, prompt_version = identity
    query = (
        select(Summary)
        .where(
            Summary.kind == kind,
            Summary.subject.in_(list(subjects)),
            Summary.model == model,
            Summary.backend == backend,
            Summary.prompt_version == prompt_version,
        )
        .order_by(Summary.created_at.desc(), Summary.id.desc())
    )
    found: dict[str, list[Summary]] = defaultdict(list)
    for row in session.scalars(query):
        found[row.subject].append(row)
    return dict(found)


def save_summary(session: Session, summary: Summary) -> Summary:
    """Store a summary, replacing one with the same kind, subject, source hash, model, backend and prompt."""
    session.execute(
        delete(Summary).where(
            Summary.kind == summary.kind,
            Summary.subject == summary.subject,
            Summary.source_hash == summary.source_hash,
            Summary.model == summary.model,
            Summary.backend == summary.backend,
            Summary.prompt_version == summary.prompt_version,
        )
    )
    session.add(summary)
    return summary


def paper_subject(paper_id: int) -> str:
    return f"paper:{paper_id}"


def theme_subject(theme: str) -> str:
    return f"theme:{theme}"


def tldrs_for(session: Session, paper_ids: Iterable[int], config: Config) -> dict[int, Summary]:
    """The newest TL;DR per paper made with the configured model, backend and prompt (papers without one are
    missing)."""
    ids = list(paper_ids)
    identity = summary_identity(config.summariser, "tldr")
    found = find_summaries(session, "tldr", [paper_subject(i) for i in ids], identity)
    return {rows[0].paper_id: rows[0] for rows in found.values()}


def newest_tldrs(session: Session, paper_ids: Iterable[int]) -> dict[int, Summary]:
    """The newest TL;DR per paper, whichever summariser made it (for listings that have no config at hand)."""
    ids = list(paper_ids)
    query = select(Summary).where(Summary.kind == "tldr", Summary.paper_id.in_(ids))
    newest: dict[int, Summary] = {}
    for row in session.scalars(query.order_by(Summary.created_at, Summary.id)):
        newest[row.paper_id] = row
    return newest
