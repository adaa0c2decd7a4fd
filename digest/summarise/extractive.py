"""The `extractive` backend: no model. A TL;DR is the abstract's most informative sentence, trimmed; a theme
overview is the structured one (`structured`), built from the papers' terms and signals.

Deterministic and fast; it is also the fallback when a model's summary fails its checks, since neither can
invent anything.
"""

from __future__ import annotations

import re

from digest.summarise.base import Summariser, Task
from digest.summarise.structured import structured_overview
from digest.text import split_sentences, words

# Sentences that say what a paper does or found score higher; background sentences lower.
_CONTRIBUTION = re.compile(
    r"\b(we (?:propose|present|introduce|develop|design|show|find|demonstrate|release)|this (?:paper|work)|"
    r"our (?:method|approach|model|framework|results?)|outperform\w*|achiev\w*|improv\w*|state-of-the-art|"
    r"surpass\w*|reduc\w*|speed\w*)",
    re.IGNORECASE,
)
_BACKGROUND = re.compile(
    r"\b(however|recent(?:ly)?|has (?:made|become|shown)|have (?:made|become|shown)|remains?|challeng\w*|"
    r"limited|struggle\w*|suffer\w*|existing)\b",
    re.IGNORECASE,
)
_CLAUSE_BREAK = re.compile(r"[,;:]\s")
# Words a cut sentence must not end on ("... computation within Huggingface across a.").
_DANGLING = frozenset(
    "a an the of to and or but in on at by for with from into within across over under between than as that which "
    "who whose while when where whether its their our this these those is are was were be been via such both".split()
)


def sentence_score(sentence: str, position: int, title_words: set[str]) -> float:
    """How informative a sentence is: contribution cues, overlap with the title, a little for coming early."""
    tokens = {w.lower().strip(".,;:()") for w in words(sentence)}
    score = 2.0 * len(_CONTRIBUTION.findall(sentence)) - 1.0 * len(_BACKGROUND.findall(sentence))
    score += 0.5 * len(tokens & title_words)
    score -= 0.1 * position
    return score


def best_sentences(text: str, title: str, count: int) -> list[str]:
    """The `count` best sentences of `text`, in their original order."""
    sentences = split_sentences(text)
    title_words = {w.lower().strip(".,;:()") for w in words(title) if len(w) > 3}
    ranked = sorted(range(len(sentences)), key=lambda i: -sentence_score(sentences[i], i, title_words))
    return [sentences[i] for i in sorted(ranked[:count])]


def trim(sentence: str, max_words: int) -> str:
    """At most `max_words` words, cut at the last clause break that fits (else at a word, not after a dangling
    "a", "of" or "within") and closed with a full stop, so the result never ends mid-word or mid-phrase."""
    tokens = words(sentence)
    if len(tokens) <= max_words:
        return sentence
    cut = " ".join(tokens[:max_words])
    breaks = [m.start() for m in _CLAUSE_BREAK.finditer(cut)]
    if breaks and breaks[-1] > len(cut) // 2:
        return cut[: breaks[-1]].rstrip(",;: ") + "."
    kept = tokens[:max_words]
    while len(kept) > max_words // 2 and kept[-1].lower().strip(",;:") in _DANGLING:
        kept.pop()
    return " ".join(kept).rstrip(",;: ") + "."


def extract_tldr(task: Task) -> str:
    sentences = best_sentences(task.source, task.title, 1)
    return trim(sentences[0], task.max_words) if sentences else ""


class ExtractiveSummariser(Summariser):
    """No model: the source's most informative sentence, trimmed, and a structured overview (also the fallback
    for rejected answers)."""

    def summarise(self, tasks: list[Task], strict: bool = False) -> list[str]:
        return [extract_tldr(t) if t.kind == "tldr" else structured_overview(t) for t in tasks]
