"""Writing summaries: TL;DRs for papers and overviews for themes, each checked for grounding, regenerated once
with a stricter prompt if it fails, and replaced by an extractive summary if it fails again.

Summaries are stored with the model, backend, prompt version and a hash of their source, and reused while all
four are unchanged. The model never runs inside a database transaction: paper TL;DRs are written batch by batch
and each batch is committed in a short transaction of its own (so an interrupted run resumes where it stopped);
theme overviews are returned unsaved, for the editions stage to store with its edition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from digest.config import Config, SummariserSettings
from digest.models import Paper, Summary
from digest.store import session_scope
from digest.store import summaries as store
from digest.store.summaries import summary_identity
from digest.summarise import grounding
from digest.summarise.base import SourceItem, Summariser, Task, backend_class
from digest.summarise.extractive import ExtractiveSummariser
from digest.text import clean_source, source_hash

OVERVIEW_PAPERS = 4
OVERVIEW_SENTENCE_WORDS = 30
OVERVIEW_MAX_WORDS = 110


@dataclass(frozen=True)
class Written:
    """A finished summary text and how it came to be."""

    text: str
    method: str  # model, model-strict or extractive
    grounded: bool
    problems: list[str]


@dataclass
class SummariseReport:
    papers: int = 0
    reused: int = 0
    written: int = 0
    methods: dict[str, int] = field(default_factory=dict)

    def count(self, method: str) -> None:
        self.written += 1
        self.methods[method] = self.methods.get(method, 0) + 1


_summarisers: dict[tuple[SummariserSettings, str], Summariser] = {}


def get_summariser(config: Config) -> Summariser:
    """The configured backend, created once per process and settings (a model loads on first use)."""
    key = (config.summariser, str(config.base_dir))
    if key not in _summarisers:
        _summarisers[key] = backend_class(config.summariser.backend)(config.summariser, config)
    return _summarisers[key]


# --- Checking and falling back -----------------------------------------------------------------------------


def limits(task: Task) -> tuple[int, int, int]:
    """(most sentences kept, fewest sentences accepted, most words) for a task's kind."""
    if task.kind == "tldr":
        return 1, 1, task.max_words
    return 4, min(2, max(1, len(task.items))), OVERVIEW_MAX_WORDS


def check(task: Task, text: str) -> tuple[str, list[str]]:
    """The tidied text and its problems against the task's source."""
    keep, least, max_words = limits(task)
    tidied = grounding.tidy(text, keep)
    return tidied, grounding.problems(tidied, task.source, max_words, least)


def write(summariser: Summariser, tasks: list[Task]) -> list[Written]:
    """Summaries for `tasks`: the model's answer if it passes the check, else a stricter retry, else extractive.
    Each result's `problems` say why earlier attempts were turned down."""
    results: dict[int, Written] = {}
    history: list[list[str]] = [[] for _ in tasks]
    pending = list(range(len(tasks)))
    if not isinstance(summariser, ExtractiveSummariser):
        for method, strict in (("model", False), ("model-strict", True)):
            pending = attempt(summariser, tasks, pending, method, strict, results, history)
    fallback = ExtractiveSummariser(summariser.settings, summariser.config)
    for i, answer in zip(pending, fallback.summarise([tasks[i] for i in pending])):
        text, found = check(tasks[i], answer)
        results[i] = Written(text, "extractive", not found, history[i] + ([f"extractive: {'; '.join(found)}"] if found else []))
    return [results[i] for i in range(len(tasks))]


def attempt(
    summariser: Summariser, tasks: list[Task], pending: list[int], method: str, strict: bool,
    results: dict[int, Written], history: list[list[str]],
) -> list[int]:
    """Ask the model for the `pending` tasks; keep the answers that pass, note why the others failed, and
    return those still pending."""
    if not pending:
        return []
    still = []
    for i, answer in zip(pending, summariser.summarise([tasks[i] for i in pending], strict=strict)):
        text, found = check(tasks[i], answer)
        if found:
            history[i].append(f"{method}: {'; '.join(found)}")
            still.append(i)
        else:
            results[i] = Written(text, method, True, history[i])
    return still


# --- Paper TL;DRs ------------------------------------------------------------------------------------------


def tldr_task(paper: Paper, settings: SummariserSettings) -> Task:
    return Task(kind="tldr", title=clean_source(paper.title, 500), source=clean_source(paper.abstract or paper.title),
                max_words=settings.max_tldr_words)


def task_hash(task: Task) -> str:
    return source_hash(task.kind, task.title, task.source)


def summarise_papers(
    config: Config,
    engine: Engine,
    papers: list[Paper],
    force: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> SummariseReport:
    """Write the TL;DR of every paper that lacks a current one (all of them with `force`), committing each batch
    in a short transaction of its own. `on_progress(done, total)` counts the TL;DRs to write: once before the
    first batch and after each."""
    report = SummariseReport(papers=len(papers))
    identity = summary_identity(config.summariser, "tldr")
    tasks = {p.id: tldr_task(p, config.summariser) for p in papers}
    todo = papers if force else missing_tldrs(engine, papers, tasks, identity)
    report.reused = len(papers) - len(todo)
    if on_progress:
        on_progress(0, len(todo))
    summariser = get_summariser(config) if todo else None
    step = summariser.tasks_per_commit if summariser else 1
    for start in range(0, len(todo), step):
        batch = todo[start : start + step]
        written = write(summariser, [tasks[p.id] for p in batch])
        with session_scope(engine) as session:
            for paper, result in zip(batch, written):
                store.save_summary(session, new_summary("tldr", store.paper_subject(paper.id), paper.id, result,
                                                        identity, task_hash(tasks[paper.id]), []))
                report.count(result.method)
        if on_progress:
            on_progress(start + len(batch), len(todo))
    return report


def missing_tldrs(engine: Engine, papers: list[Paper], tasks: dict[int, Task], identity: tuple[str, str, str]) -> list[Paper]:
    """The papers with no TL;DR stored for this identity and their current text."""
    with session_scope(engine) as session:
        found = store.find_summaries(session, "tldr", [store.paper_subject(p.id) for p in papers], identity)
    current = {
        rows[0].paper_id
        for rows in found.values()
        if any(row.source_hash == task_hash(tasks[row.paper_id]) for row in rows)
    }
    return [p for p in papers if p.id not in current]


def new_summary(
    kind: str, subject: str, paper_id: int | None, result: Written, identity: tuple[str, str, str],
    hash_: str, cited: list[int],
) -> Summary:
    model, backend, prompt_version = identity
    return Summary(
        kind=kind, subject=subject, paper_id=paper_id, text=result.text, method=result.method,
        grounded=result.grounded, problems=result.problems, cited_paper_ids=cited, model=model, backend=backend,
        prompt_version=prompt_version, source_hash=hash_,
    )


# --- Theme overviews ---------------------------------------------------------------------------------------


def overview_task(theme_name: str, items: list[SourceItem]) -> Task:
    source = " ".join(f"{item.title}. {item.text}" for item in items)
    return Task(kind="overview", title=theme_name, source=source, max_words=OVERVIEW_SENTENCE_WORDS, items=tuple(items))


def overview_items(papers: list[Paper], tldrs: dict[int, Summary]) -> list[SourceItem]:
    """What an overview condenses: each of the theme's top papers (given best first) by its TL;DR, or by its
    abstract where it has none yet."""
    return [
        SourceItem(p.id, clean_source(p.title, 500), tldrs[p.id].text if p.id in tldrs else clean_source(p.abstract or p.title))
        for p in papers[:OVERVIEW_PAPERS]
    ]


def current_overviews(session: Session, config: Config, tasks: dict[str, Task]) -> dict[str, Summary]:
    """The stored overviews, by theme, written for exactly these tasks by the configured summariser and prompt."""
    identity = summary_identity(config.summariser, "overview")
    found = store.find_summaries(session, "overview", [store.theme_subject(name) for name in tasks], identity)
    current = {}
    for name, task in tasks.items():
        hash_ = task_hash(task)
        match = next((row for row in found.get(store.theme_subject(name), []) if row.source_hash == hash_), None)
        if match is not None:
            current[name] = match
    return current


def write_overview(config: Config, theme_name: str, task: Task) -> Summary:
    """A 2-4 sentence overview for `task`, citing the papers it draws on. Not stored: the model runs outside any
    transaction, and the caller stores the result in a short one of its own."""
    result = write(get_summariser(config), [task])[0] if task.items else Written("", "extractive", True, [])
    identity = summary_identity(config.summariser, "overview")
    cited = [item.paper_id for item in task.items]
    return new_summary("overview", store.theme_subject(theme_name), None, result, identity, task_hash(task), cited)
