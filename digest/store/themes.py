"""Queries for theme assignments and paper embeddings."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from digest.models import Embedding, Paper, ThemeAssignment


def embeddings_for(session: Session, paper_ids: Iterable[int], model: str) -> dict[int, Embedding]:
    ids = list(paper_ids)
    rows = session.scalars(select(Embedding).where(Embedding.model == model, Embedding.paper_id.in_(ids)))
    return {row.paper_id: row for row in rows}


def save_embedding(session: Session, embedding: Embedding) -> None:
    """Insert or replace one paper's embedding for its model."""
    session.merge(embedding)


def assignments_for(session: Session, paper_ids: Iterable[int]) -> dict[int, list[ThemeAssignment]]:
    """Each paper's theme assignments, best score first (papers with none are missing)."""
    ids = list(paper_ids)
    query = select(ThemeAssignment).where(ThemeAssignment.paper_id.in_(ids)).order_by(ThemeAssignment.score.desc())
    found: dict[int, list[ThemeAssignment]] = defaultdict(list)
    for row in session.scalars(query):
        found[row.paper_id].append(row)
    return dict(found)


def lock_papers(session: Session, paper_ids: Iterable[int]) -> None:
    """On PostgreSQL, hold the papers' rows until the transaction ends, so two workers storing embeddings and
    assignments for the same papers take turns instead of colliding (SQLite's BEGIN IMMEDIATE already does)."""
    if session.bind.dialect.name == "postgresql":
        session.execute(select(Paper.id).where(Paper.id.in_(list(paper_ids))).order_by(Paper.id).with_for_update())


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


