"""Queries for stored summaries (paper TL;DRs and theme overviews), and the identity each is stored under.

A summary's identity is the model, backend and prompt version that made it: a stored summary is current while
its identity and source hash match, so changing the model or a prompt (and bumping its version here) makes the
next run write it again. The prompts themselves are in `digest.summarise.prompts`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from digest.config import Config, SummariserSettings
from digest.models import Summary

# Bump the version of a prompt in `digest.summarise.prompts` when changing it.
TLDR_VERSION = "tldr-2"
OVERVIEW_VERSION = "overview-1"
EXTRACTIVE_VERSION = "extractive-1"


def summary_identity(settings: SummariserSettings, kind: str) -> tuple[str, str, str]:
    """(model, backend, prompt_version) that a summary of `kind` made with these settings is stored under."""
    if settings.backend == "extractive":
        return "extractive", "extractive", EXTRACTIVE_VERSION
    return settings.model, settings.backend, TLDR_VERSION if kind == "tldr" else OVERVIEW_VERSION


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
