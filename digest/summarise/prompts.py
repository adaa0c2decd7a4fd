"""Prompts for model backends, and the version that stored summaries record: change a prompt, bump its version,
and summaries made with the old one are redone on the next run. Kept free of heavy imports: `store` reads the
versions to find the current summaries."""

from __future__ import annotations

from digest.config import SummariserSettings

TLDR_VERSION = "tldr-1"
OVERVIEW_VERSION = "overview-1"
EXTRACTIVE_VERSION = "extractive-1"

Messages = list[dict[str, str]]


def summary_identity(settings: SummariserSettings, kind: str) -> tuple[str, str, str]:
    """(model, backend, prompt_version) that a summary of `kind` made with these settings is stored under."""
    if settings.backend == "extractive":
        return "extractive", "extractive", EXTRACTIVE_VERSION
    return settings.model, settings.backend, TLDR_VERSION if kind == "tldr" else OVERVIEW_VERSION


def tldr_messages(title: str, source: str, max_words: int, strict: bool) -> Messages:
    rules = f"Write one sentence of at most {max_words} words: what the paper does and its main result."
    if strict:
        rules += " Copy names and numbers exactly from the abstract; add nothing that is not in it."
    return [
        {"role": "system", "content": "You summarise research papers accurately and briefly."},
        {"role": "user", "content": f"Title: {title}\nAbstract: {source}\n\n{rules}"},
    ]


def overview_messages(theme: str, items: list[tuple[str, str]], strict: bool) -> Messages:
    papers = "\n".join(f"- {title}: {text}" for title, text in items)
    rules = "Write 2 to 4 sentences that sum up what these papers do together."
    if strict:
        rules += " Use only names and numbers that appear above; add nothing else."
    return [
        {"role": "system", "content": "You summarise research papers accurately and briefly."},
        {"role": "user", "content": f"Theme: {theme}\nPapers:\n{papers}\n\n{rules}"},
    ]

