"""Prompts for model backends. Change a prompt, bump its version in `digest.store.summaries` (TLDR_VERSION,
OVERVIEW_VERSION), and summaries made with the old one are redone on the next run."""

from __future__ import annotations

from digest.summarise.base import Task
from digest.summarise.extractive import best_sentences
from digest.summarise.subject import method_name

SYSTEM = "You summarise research papers."
# The answer is started for the model: it keeps small models from echoing the title or writing headings,
# and makes answers shorter. A TL;DR starts with the method's name when the paper gives one ("AnyControl is"),
# else with "This paper", which `subject.lead_with_subject` rewrites afterwards.
TLDR_PREFILL = "This paper"
OVERVIEW_PREFILL = "These papers"
# Papers an overview prompt shows (the theme's best); the structured fallback counts all of them.
OVERVIEW_PROMPT_PAPERS = 4
# Sentences of the abstract shown to the model: its most informative ones, which keeps prompts short (the
# grounding check still reads the whole abstract). Measured: 2 sentences ran 1.26x faster than 3 with the same
# share of first answers passing the check.
EXCERPT_SENTENCES = 2

Messages = list[dict[str, str]]


def excerpt(task: Task) -> str:
    return " ".join(best_sentences(task.source, task.title, EXCERPT_SENTENCES))


def subject(task: Task) -> str | None:
    """The name of the method a TL;DR task's paper proposes, if it gives one."""
    return method_name(task.title, task.source) if task.kind == "tldr" else None


def messages(task: Task, strict: bool) -> Messages:
    """The chat for a task: a TL;DR of one paper or an overview of a theme's papers."""
    if task.kind == "tldr":
        body = f"Title: {task.title}\nAbstract: {excerpt(task)}"
        rules = f"In one sentence of at most {task.max_words} words, say what the paper does and its main result."
    else:
        papers = "\n".join(f"- {item.title}: {item.text}" for item in task.items[:OVERVIEW_PROMPT_PAPERS])
        body = f"Theme: {task.title}\nPapers:\n{papers}"
        rules = ("In 2 to 4 sentences, say what these papers have in common and how they differ. "
                 "Do not repeat their summaries.")
    if strict:
        rules += " Use only names and numbers written above, and add nothing else."
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{body}\n\n{rules}"}]


def prefill(task: Task) -> str:
    if task.kind != "tldr":
        return OVERVIEW_PREFILL
    name = subject(task)
    return f"{name} is" if name else TLDR_PREFILL


def plain_text(task: Task) -> str:
    """The input for models without a chat template: summarisation models (BART, T5) take the bare text."""
    if task.kind == "tldr":
        return f"{task.title}. {task.source}"
    return " ".join(f"{item.title}. {item.text}" for item in task.items[:OVERVIEW_PROMPT_PAPERS])
