"""Queries for stored summaries (paper TL;DRs and theme overviews), and the identity each is stored under.

A summary's identity is the model, backend and prompt version that made it: a stored summary is current while
its identity and source hash match, so changing the model or a prompt (and bumping its version here) makes the
next run write it again. The prompts themselves are in `digest.summarise.prompts`.

Several summarise workers (processes or machines) share the papers still to summarise through claims:
`claim_papers` hands each paper to one worker (BEGIN IMMEDIATE on SQLite, `FOR UPDATE SKIP LOCKED` on
PostgreSQL), and `finish_claims` gives them up in the transaction that stores the TL;DRs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digest.config import Config, SummariserSettings
from digest.models import Paper, Summary, SummaryClaim, utcnow

# Bump the version of a prompt in `digest.summarise.prompts` when changing it.
TLDR_VERSION = "tldr-3"
OVERVIEW_VERSION = "overview-2"
EXTRACTIVE_VERSION = "extractive-2"


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


# --- Claims: several workers sharing the papers to summarise ------------------------------------------------


def claim_papers(
    session: Session, paper_ids: list[int], worker: str, size: int, lease_seconds: float
) -> tuple[list[int], set[int]]:
    """Claim for `worker` up to `size` of `paper_ids` (in their order) that no other worker holds. Returns the
    claimed ids and the ids other workers hold (claimed less than `lease_seconds` ago). On PostgreSQL a paper
    another worker is claiming at this moment is skipped (neither claimed nor held: ask again later); its claim
    is read again after the lock, so two workers never both take one paper."""
    cutoff = utcnow() - timedelta(seconds=lease_seconds)
    held = held_by_others(session, paper_ids, worker, cutoff)
    wanted = [paper_id for paper_id in paper_ids if paper_id not in held][:size]
    if wanted and session.bind.dialect.name == "postgresql":
        locked = set(session.scalars(select(Paper.id).where(Paper.id.in_(wanted)).with_for_update(skip_locked=True)))
        held |= held_by_others(session, locked, worker, cutoff)
        wanted = [paper_id for paper_id in wanted if paper_id in locked and paper_id not in held]
    if wanted:
        now = utcnow()
        insert = (postgresql if session.bind.dialect.name == "postgresql" else sqlite).insert(SummaryClaim)
        session.execute(
            insert.on_conflict_do_update(index_elements=["paper_id"], set_={"worker": worker, "claimed_at": now}),
            [{"paper_id": paper_id, "worker": worker, "claimed_at": now} for paper_id in wanted],
        )
    return wanted, held


def held_by_others(session: Session, paper_ids: Iterable[int], worker: str, cutoff) -> set[int]:
    """The papers among `paper_ids` that another worker claimed after `cutoff`."""
    query = select(SummaryClaim.paper_id).where(
        SummaryClaim.paper_id.in_(list(paper_ids)), SummaryClaim.worker != worker, SummaryClaim.claimed_at > cutoff
    )
    return set(session.scalars(query))


def finish_claims(session: Session, paper_ids: Iterable[int], worker: str) -> set[int]:
    """Give up `worker`'s claims on `paper_ids`; return the ids it still held (a claim taken over by another
    worker after the lease is not this worker's to store any more)."""
    ids = list(paper_ids)
    query = select(SummaryClaim.paper_id).where(SummaryClaim.paper_id.in_(ids), SummaryClaim.worker == worker)
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    mine = set(session.scalars(query))
    session.execute(delete(SummaryClaim).where(SummaryClaim.paper_id.in_(mine), SummaryClaim.worker == worker))
    return mine


def release_claims(session: Session, worker: str) -> None:
    """Give up every claim `worker` holds (it is stopping before storing them)."""
    session.execute(delete(SummaryClaim).where(SummaryClaim.worker == worker))
