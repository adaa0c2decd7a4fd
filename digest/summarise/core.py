"""Writing summaries: TL;DRs for papers and overviews for themes, each checked for grounding, regenerated once
with a stricter prompt if it fails, and replaced by an extractive summary if it fails again.

Summaries are stored with the model, backend, prompt version and a hash of their source, and reused while all
four are unchanged. The model never runs inside a database transaction: paper TL;DRs are written batch by batch
and each batch is committed in a short transaction of its own (so an interrupted run resumes where it stopped);
theme overviews are returned unsaved, for the editions stage to store with its edition.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from digest.config import Config, SummariserSettings
from digest.models import Paper, Summary
from digest.store import session_scope, worker_name
from digest.store import summaries as store
from digest.store.summaries import summary_identity
from digest.summarise import grounding, prompts
from digest.summarise.base import SourceItem, Summariser, Task, backend_class
from digest.summarise.extractive import ExtractiveSummariser
from digest.summarise.specificity import Specificity, run_specificity
from digest.summarise.subject import lead_with_subject
from digest.text import clean_source, source_hash

OVERVIEW_PAPERS = 4
# Papers looked at per claim (in batches): enough to find free ones when other workers hold many.
CLAIM_WINDOW = 8
CLAIM_RETRY_SECONDS = 0.1
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
    elsewhere: int = 0  # papers other workers were writing, left to them
    methods: dict[str, int] = field(default_factory=dict)
    vague: int = 0  # model answers that did not single out their paper
    replaced_vague: int = 0  # of those, replaced by the abstract's own more specific sentence

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


def check(task: Task, text: str, from_model: bool = True) -> tuple[str, list[str]]:
    """The tidied text and its problems against the task's source (a TL;DR's source includes its paper's title).
    A model's TL;DR is made to lead with its subject, may not use filler phrases, and when it fails is cut at
    its last clause break that leaves a passing sentence ("X does Y, which is a key finding in the field." ->
    "X does Y."). An extractive one is checked as cut from the source."""
    keep, least, max_words = limits(task)
    tidied = grounding.tidy(text, keep)
    if task.kind != "tldr":
        repeated = grounding.repeated_sentences(tidied, [item.text for item in task.items])
        found = [f"repeats a TL;DR ({repeated[0]!r})"] if repeated else []
        return tidied, grounding.problems(tidied, task.source, max_words, least) + found
    source = f"{task.title}. {task.source}"
    if not from_model:
        return tidied, grounding.problems(tidied, source, max_words, least)
    tidied = lead_with_subject(tidied, prompts.subject(task))

    def found(candidate: str) -> list[str]:
        return grounding.problems(candidate, source, max_words, least) + grounding.filler_problems(candidate)

    problems = found(tidied)
    if problems:
        cut = next((c for c in grounding.clause_cuts(tidied) if not found(c)), None)
        if cut:
            return cut, []
    return tidied, problems


def write(summariser: Summariser, tasks: list[Task]) -> list[Written]:
    """Summaries for `tasks`: the model's answer if it passes the check, else a stricter retry, else the
    extractive backend's (a TL;DR cut from the abstract, checked; a structured overview built from the papers'
    terms and signals, which invents nothing). Each result's `problems` say why earlier attempts were turned
    down."""
    results: dict[int, Written] = {}
    history: list[list[str]] = [[] for _ in tasks]
    pending = list(range(len(tasks)))
    if not isinstance(summariser, ExtractiveSummariser):
        for method, strict in (("model", False), ("model-strict", True)):
            pending = attempt(summariser, tasks, pending, method, strict, results, history)
    fallback = ExtractiveSummariser(summariser.settings, summariser.config)
    for i, answer in zip(pending, fallback.summarise([tasks[i] for i in pending])):
        if tasks[i].kind != "tldr":
            results[i] = Written(answer, "structured", True, history[i])
            continue
        text, found = check(tasks[i], answer, from_model=False)
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
    """Changes with the text a summary is made from, and for an overview with its papers' keywords and signals."""
    extra = [repr((i.keywords, i.upvotes, i.comments, i.stars)) for i in task.items]
    return source_hash(task.kind, task.title, task.source, *extra)


def summarise_papers(
    config: Config,
    engine: Engine,
    papers: list[Paper],
    force: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> SummariseReport:
    """Write the TL;DR of every paper that lacks a current one (all of them with `force`), batch by batch, shortest
    prompts first: claim a batch (so other workers sharing the database leave it alone), generate it on this
    thread, and let a `Finisher` thread check the answers, fall back where needed and store the batch with its
    claims given up in one short transaction, while the model goes on with the next batch. Papers another worker
    holds are left to it. `on_progress(done, total)` counts the TL;DRs this run writes: once at the start and
    after each batch."""
    report = SummariseReport(papers=len(papers))
    identity = summary_identity(config.summariser, "tldr")
    tasks = {p.id: tldr_task(p, config.summariser) for p in papers}
    todo = papers if force else missing_tldrs(engine, papers, tasks, identity)
    report.reused = len(papers) - len(todo)
    if on_progress:
        on_progress(0, len(todo))
    if not todo:
        return report
    summariser = get_summariser(config)
    specificity = None
    if first_method(summariser) == "model":
        todo = by_prompt_length(todo, tasks)
        specificity = run_specificity(config, engine, papers)
    worker = worker_name()
    to_write, reused_before = len(todo), report.reused

    def stored() -> None:  # the total shrinks by what other workers take or finished meanwhile
        if on_progress:
            on_progress(report.written, to_write - report.elsewhere - (report.reused - reused_before))

    try:
        with Finisher(engine, summariser, tasks, identity, worker, report, stored, specificity) as finisher:
            while todo or finisher.open_batches():
                retries = finisher.take_retries(at_least=summariser.batch_size if todo else 1)
                if retries:  # answers that failed the check, asked again with the stricter prompt
                    answers = summariser.summarise([tasks[paper.id] for _, paper in retries], strict=True)
                    finisher.submit(retries, answers, "model-strict")
                elif todo:
                    batch, todo, held = claim_next(engine, todo, worker, summariser.tasks_per_commit,
                                                   config.summariser.claim_lease_seconds)
                    report.elsewhere += held
                    write_now = batch if force else missing_tldrs(engine, batch, tasks, identity)
                    report.reused += len(batch) - len(write_now)  # another worker finished them meanwhile
                    claimed = Batch([paper.id for paper in batch], write_now)
                    answers = summariser.summarise([tasks[paper.id] for paper in write_now]) if write_now else []
                    finisher.submit([(claimed, paper) for paper in write_now], answers, first_method(summariser),
                                    opened=claimed)
                else:
                    finisher.wait()
    finally:
        with session_scope(engine) as session:
            store.release_claims(session, worker)
    return report


def by_prompt_length(papers: list[Paper], tasks: dict[int, Task]) -> list[Paper]:
    """`papers` in the order of their prompts' length, so that each claimed batch holds prompts of about the
    same length and its generation pads little, as when a run's answers are all generated in one call."""
    return sorted(papers, key=lambda paper: len(prompts.messages(tasks[paper.id], strict=False)[-1]["content"]))


def first_method(summariser: Summariser) -> str:
    return "extractive" if isinstance(summariser, ExtractiveSummariser) else "model"


@dataclass
class Batch:
    """Papers claimed together and stored together: `claimed` ids (all given up when it is stored), the papers
    being written, and their results and rejected attempts so far."""

    claimed: list[int]
    papers: list[Paper]
    results: dict[int, Written] = field(default_factory=dict)
    history: dict[int, list[str]] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.papers)


class Finisher:
    """Checks answers and stores finished batches on a thread of its own, so that checking and committing never
    hold up the model (on a GPU, generation would otherwise wait for both after every batch). Answers that fail
    the check come back through `take_retries` for the stricter prompt; a stricter answer that fails too is
    replaced by the extractive one. With a `specificity` measure, an answer that fails is replaced at once by
    the extractive one where that picks out its paper, and an answer that passes but is vague is replaced by the
    extractive one where that is more specific. On leaving, the answers already handed over are still
    checked and every batch that is complete is stored; an error on this thread is raised on the caller's."""

    def __init__(self, engine: Engine, summariser: Summariser, tasks: dict[int, Task], identity: tuple[str, str, str],
                 worker: str, report: SummariseReport, on_stored: Callable[[], None],
                 specificity: Specificity | None = None) -> None:
        self.engine, self.tasks, self.identity, self.worker = engine, tasks, identity, worker
        self.report, self.on_stored, self.specificity = report, on_stored, specificity
        self.fallback = ExtractiveSummariser(summariser.settings, summariser.config)
        self.jobs: queue.Queue = queue.Queue()
        self.changed = threading.Condition()
        self.retries: list[tuple[Batch, Paper]] = []
        self.open = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name="digest-summary-checks", daemon=True)

    def __enter__(self) -> Finisher:
        self.thread.start()
        return self

    def __exit__(self, error_type, *_) -> None:
        self.jobs.put(None)
        self.thread.join()
        if error_type is None:
            self.raise_error()

    def submit(self, items: list[tuple[Batch, Paper]], answers: list[str], method: str, opened: Batch | None = None):
        """Hand over answers to check (`opened`: a new batch they belong to)."""
        self.raise_error()
        if opened is not None:
            with self.changed:
                self.open += 1
        self.jobs.put((items, answers, method, opened))

    def take_retries(self, at_least: int = 1) -> list[tuple[Batch, Paper]]:
        """The papers to ask again, once there are `at_least` of them (fewer wait: a batch of two takes nearly as
        long to generate as a full one)."""
        self.raise_error()
        with self.changed:
            if len(self.retries) < at_least:
                return []
            retries, self.retries = self.retries, []
        return retries

    def open_batches(self) -> int:
        with self.changed:
            return self.open

    def wait(self) -> None:
        """Until there is a retry to generate or a batch was stored."""
        with self.changed:
            open_now = self.open
            while not self.retries and self.open == open_now > 0 and self.error is None:
                self.changed.wait()
        self.raise_error()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        try:
            while (job := self.jobs.get()) is not None:
                self.check(*job)
        except BaseException as exc:  # handed to the caller's thread
            with self.changed:
                self.error = exc
                self.changed.notify_all()

    def check(self, items: list[tuple[Batch, Paper]], answers: list[str], method: str, opened: Batch | None) -> None:
        retry, fall_back, passed = [], [], []
        for (batch, paper), answer in zip(items, answers):
            text, found = check(self.tasks[paper.id], answer, from_model=method != "extractive")
            history = batch.history.setdefault(paper.id, [])
            if method == "extractive":
                batch.results[paper.id] = Written(text, method, not found,
                                                  [f"extractive: {'; '.join(found)}"] if found else [])
            elif not found:
                passed.append((batch, paper, Written(text, method, True, history)))
            else:
                history.append(f"{method}: {'; '.join(found)}")
                (retry if method == "model" else fall_back).append((batch, paper))
        for (batch, paper, _), result in zip(passed, self.most_specific(passed)):
            batch.results[paper.id] = result
        retry = self.unless_extractive_is_specific(retry)
        self.extractive(fall_back)
        with self.changed:
            self.retries.extend(retry)
            self.changed.notify_all()
        batches = {id(batch): batch for batch, _ in items}
        if opened is not None:
            batches[id(opened)] = opened
        for batch in batches.values():
            if batch.done:
                self.store(batch)

    def most_specific(self, passed: list[tuple[Batch, Paper, Written]]) -> list[Written]:
        """The answers that passed the check, each replaced by its paper's extractive TL;DR where the answer is
        vague (it fits another paper of the run at least as well as its own) and the extractive one is more
        specific. Measured on two corpus parts, that took the TL;DR alone from below the title alone to above it
        at retrieving its abstract (bench/quality.py)."""
        results = [written for _, _, written in passed]
        if not self.specificity or not passed:
            return results
        margins = self.specificity.margins([(paper.id, written.text) for _, paper, written in passed])
        vague = [k for k, margin in enumerate(margins) if margin <= 0]
        self.report.vague += len(vague)
        for j, text, margin in self.specific_extracts([passed[k][1] for k in vague]):
            k = vague[j]
            if margin > margins[k]:
                note = f"{results[k].method}: vague (fits another paper of the run better by {-margins[k]:.2f})"
                results[k] = Written(text, "extractive", True, results[k].problems + [note])
                self.report.replaced_vague += 1
        return results

    def unless_extractive_is_specific(self, failed: list[tuple[Batch, Paper]]) -> list[tuple[Batch, Paper]]:
        """Of the papers whose first answer failed the check, those still to ask again with the stricter prompt:
        where the extractive TL;DR picks out its paper, it is taken instead, without a second generation (which
        rescued about a third of failed answers, and cost an eighth of the run, in bench/quality.py)."""
        if not self.specificity or not failed:
            return failed
        taken = set()
        for k, text, margin in self.specific_extracts([paper for _, paper in failed]):
            if margin > 0:
                batch, paper = failed[k]
                batch.results[paper.id] = Written(text, "extractive", True, batch.history[paper.id])
                taken.add(k)
        return [item for k, item in enumerate(failed) if k not in taken]

    def specific_extracts(self, papers: list[Paper]) -> list[tuple[int, str, float]]:
        """(index into `papers`, extractive TL;DR, its specificity margin) for each paper whose extractive TL;DR
        passes the check."""
        passing = [(k, text) for k, (text, found) in enumerate(self.extracts(papers)) if not found]
        margins = self.specificity.margins([(papers[k].id, text) for k, text in passing])
        return [(k, text, margin) for (k, text), margin in zip(passing, margins)]

    def extracts(self, papers: list[Paper]) -> list[tuple[str, list[str]]]:
        """Each paper's extractive TL;DR, checked as cut from its source: (text, problems)."""
        tasks = [self.tasks[paper.id] for paper in papers]
        answers = self.fallback.summarise(tasks) if tasks else []
        return [check(task, answer, from_model=False) for task, answer in zip(tasks, answers)]

    def extractive(self, items: list[tuple[Batch, Paper]]) -> None:
        """The extractive summary for papers whose stricter answer failed too."""
        for (batch, paper), (text, found) in zip(items, self.extracts([paper for _, paper in items])):
            problems = batch.history[paper.id] + ([f"extractive: {'; '.join(found)}"] if found else [])
            batch.results[paper.id] = Written(text, "extractive", not found, problems)

    def store(self, batch: Batch) -> None:
        """Store a finished batch and give up its claims in one transaction (only the TL;DRs whose claim this
        worker still holds: one taken over after the lease belongs to the worker that took it)."""
        with session_scope(self.engine) as session:
            still_mine = store.finish_claims(session, batch.claimed, self.worker)
            for paper in batch.papers:
                if paper.id in still_mine:
                    result = batch.results[paper.id]
                    store.save_summary(session, new_summary("tldr", store.paper_subject(paper.id), paper.id, result,
                                                            self.identity, task_hash(self.tasks[paper.id]), []))
                    self.report.count(result.method)
        with self.changed:
            self.open -= 1
            self.changed.notify_all()
        self.on_stored()


def claim_next(
    engine: Engine, todo: list[Paper], worker: str, size: int, lease_seconds: float
) -> tuple[list[Paper], list[Paper], int]:
    """Claim the next batch of `todo` for `worker`: (the batch, the papers still to try, how many papers other
    workers hold and are left to them). Waits a moment while every candidate is being claimed by another."""
    while True:
        candidates = todo[: size * CLAIM_WINDOW]
        with session_scope(engine) as session:
            claimed, held = store.claim_papers(session, [p.id for p in candidates], worker, size, lease_seconds)
        batch = [p for p in candidates if p.id in set(claimed)]
        rest = [p for p in todo if p.id not in set(claimed) and p.id not in held]
        if batch or len(rest) < len(todo):
            return batch, rest, len(todo) - len(rest) - len(batch)
        time.sleep(CLAIM_RETRY_SECONDS)


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


def overview_items(papers: list[Paper], tldrs: dict[int, Summary], keywords: dict[int, list[str]] | None = None) -> list[SourceItem]:
    """What an overview condenses: each of the theme's papers (given best first) by its TL;DR, or by its abstract
    where it has none yet, with the theme keywords it matched and its popularity signals."""
    keywords = keywords or {}
    return [
        SourceItem(
            p.id, clean_source(p.title, 500),
            tldrs[p.id].text if p.id in tldrs else clean_source(p.abstract or p.title),
            keywords=tuple(keywords.get(p.id, ())), upvotes=p.upvotes, comments=p.num_comments, stars=p.github_stars,
        )
        for p in papers
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


def write_overviews(config: Config, tasks: dict[str, Task]) -> dict[str, Summary]:
    """A 2-4 sentence overview for each theme's task (none for a single paper), citing the papers it draws on,
    all generated together (6 themes on a CPU: 2.2x faster than one by one, bench/summarise.py --overviews).
    Not stored: the model runs outside any transaction, and the caller stores the results in a short one of its
    own."""
    # One paper's overview could only restate its TL;DR: such a theme shows its paper alone.
    several = [name for name, task in tasks.items() if len(task.items) > 1]
    results = dict(zip(several, write(get_summariser(config), [tasks[name] for name in several])))
    identity = summary_identity(config.summariser, "overview")
    overviews = {}
    for name, task in tasks.items():
        result = results.get(name, Written("", "structured", True, []))
        drawn_on = task.items[: prompts.OVERVIEW_PROMPT_PAPERS] if result.method.startswith("model") else task.items
        cited = [item.paper_id for item in drawn_on]
        overviews[name] = new_summary("overview", store.theme_subject(name), None, result, identity, task_hash(task),
                                      cited)
    return overviews


def write_overview(config: Config, theme_name: str, task: Task) -> Summary:
    """The overview of one theme's task (see `write_overviews`)."""
    return write_overviews(config, {theme_name: task})[theme_name]
