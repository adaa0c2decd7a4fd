"""Structured theme overviews: what a theme's papers share and which one stands out, built from the papers' own
terms and signals rather than written by a model. It is the fallback when a model's overview fails its checks
(and what the extractive backend writes), and it never repeats the TL;DRs shown below it:

    "6 papers: 4 on diffusion, 2 on ControlNet; Stable Diffusion appears in 3. New methods: AnyControl,
    ControlAR, SmartControl. Most upvoted: AnyControl (159 upvotes)."
"""

from __future__ import annotations

import re
from collections import Counter

from digest.summarise.base import SourceItem, Task
from digest.summarise.subject import is_name, method_name
from digest.text import split_sentences, words

MOST_SHARED = 3
MOST_METHODS = 4
# Name-like words too common in papers to say anything about a theme.
_GENERIC = frozenset("ai ml nlp cv llm llms lm lms sota gpu gpus api".split())
_CAPITALISED_RUN = re.compile(r"\b[A-Z][\w+-]*(?: [A-Z][\w+-]*)+")
_SIGNALS = (("upvotes", "Most upvoted", "upvotes"), ("comments", "Most discussed", "comments"),
            ("stars", "Most starred", "GitHub stars"))


def structured_overview(task: Task) -> str:
    """The overview of `task.items` in at most three sentences: how many papers and what they share, the methods
    they name, and the one that stands out by its signals."""
    items = task.items
    sentences = [shared_sentence(items), methods_sentence(items), standout_sentence(items)]
    return " ".join(s for s in sentences if s)


def shared_sentence(items: tuple[SourceItem, ...]) -> str:
    """"6 papers: 4 on diffusion, 2 on ControlNet; Stable Diffusion appears in 3." (keywords the theme matched,
    then names several papers use)."""
    count = len(items)
    head = f"{count} paper{'' if count == 1 else 's'}"
    keywords = shared(items, lambda item: distinct_keywords(item.keywords), least=2)
    names = shared(items, item_names, least=2, leave_out={k.lower() for k, _ in keywords})
    text = head + (": " + join(f"{n} on {keyword}" for keyword, n in keywords) if keywords else "")
    if names:
        text += "; " + join(f"{name} appears in {n}" for name, n in names)
    return text + "."


def shared(items, terms_of, least: int, leave_out: frozenset[str] | set[str] = frozenset()) -> list[tuple[str, int]]:
    """The terms found in at least `least` papers, most papers first (ties in order of first appearance), with
    their paper counts. `terms_of(item)` maps each term's lower-case form to how it is written."""
    counts: Counter[str] = Counter()
    written: dict[str, str] = {}
    for item in items:
        for key, term in terms_of(item).items():
            if key not in leave_out:
                counts[key] += 1
                written.setdefault(key, term)
    ranked = sorted((key for key, n in counts.items() if n >= least), key=lambda key: -counts[key])
    return [(written[key], counts[key]) for key in ranked[:MOST_SHARED]]


def distinct_keywords(keywords: tuple[str, ...]) -> dict[str, str]:
    """A paper's matched keywords by lower-case form, without one that another extends ("prompt" beside
    "prompting")."""
    lowered = {k.lower(): k for k in keywords}
    return {key: k for key, k in lowered.items() if not any(other != key and other.startswith(key) for other in lowered)}


def item_names(item: SourceItem) -> dict[str, str]:
    """The names in a paper's title and text: words that read as names (acronyms, CamelCase, names with digits)
    and, in the text, runs of capitalised words inside a sentence ("Stable Diffusion")."""
    found = {}
    for word in map(bare, words(f"{item.title} {item.text}")):
        if is_name(word) and word.lower() not in _GENERIC and not word.replace(".", "").isdigit():
            found.setdefault(word.lower(), word)
    for sentence in split_sentences(item.text):
        for run in _CAPITALISED_RUN.findall(" ".join(map(bare, words(sentence)[1:]))):
            found.setdefault(run.lower(), run)
    return found


def bare(word: str) -> str:
    return re.sub(r"'s$", "", re.sub(r"^[^\w]+|[^\w+]+$", "", word))


def methods_sentence(items: tuple[SourceItem, ...]) -> str:
    names = []
    for item in items:
        name = method_name(item.title, item.text)
        if name and name not in names:
            names.append(name)
    if not names:
        return ""
    more = len(names) - MOST_METHODS
    listed = join(names[:MOST_METHODS]) + (f" and {more} more" if more > 0 else "")
    return f"{'New method' if len(names) == 1 else 'New methods'}: {listed}."


def standout_sentence(items: tuple[SourceItem, ...]) -> str:
    """The paper with the most upvotes (else comments, else GitHub stars), when any paper has some."""
    for field, label, unit in _SIGNALS:
        best = max(items, key=lambda item: getattr(item, field) or 0)
        count = getattr(best, field) or 0
        if count > 0 and len(items) > 1:
            return f"{label}: {short_title(best)} ({count} {unit})."
    return ""


def short_title(item: SourceItem) -> str:
    """A paper's method name where it has one, else its title."""
    return method_name(item.title, item.text) or item.title


def join(parts) -> str:
    """"a", "a and b", "a, b and c"."""
    parts = list(parts)
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
