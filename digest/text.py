"""Cleaning a paper's text before a model reads it (to embed it for themes or to summarise it): LaTeX stripped,
whitespace normalised, length capped, sentences split, and the hash that tells whether something stored from a
text (an embedding, a summary) still matches it."""

from __future__ import annotations

import hashlib
import re

MAX_SOURCE_CHARS = 4000

_LATEX_COMMAND_WITH_ARG = re.compile(r"\\(?:text\w*|emph|math\w*|operatorname|url|cite\w*|ref|footnote)\s*\{([^{}]*)\}")
_LATEX_COMMAND = re.compile(r"\\([A-Za-z]+)")
_LATEX_SYMBOLS = {
    "times": "x", "approx": "~", "sim": "~", "leq": "<=", "geq": ">=", "le": "<=", "ge": ">=", "pm": "+/-",
    "alpha": "alpha", "beta": "beta", "gamma": "gamma", "lambda": "lambda", "mu": "mu", "sigma": "sigma",
    "epsilon": "epsilon", "delta": "delta", "theta": "theta", "to": "->", "rightarrow": "->", "infty": "infinity",
    "%": "%",
}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|et al|etc|vs|Fig|Eq|Sec|approx|resp)\.$", re.IGNORECASE)


def strip_latex(text: str) -> str:
    """Plain text from LaTeX-flavoured abstracts: `$\\mathbf{x}$` -> `x`, `\\times` -> `x`, `\\%` -> `%`."""
    text = text.replace("``", "\"").replace("''", "\"").replace("\\%", "%").replace("\\&", "&").replace("\\_", "_").replace("~", " ")
    for _ in range(3):  # nested commands unwrap from the inside out
        text = _LATEX_COMMAND_WITH_ARG.sub(r"\1", text)
    text = _LATEX_COMMAND.sub(lambda m: _LATEX_SYMBOLS.get(m.group(1), m.group(1)), text)
    text = re.sub(r"\$+", "", text)
    text = re.sub(r"[{}^]", "", text)
    return text


def normalise_whitespace(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def clean_source(text: str, max_chars: int = MAX_SOURCE_CHARS) -> str:
    """The text a summary is written from: LaTeX stripped, whitespace squeezed, cut at a sentence end
    before `max_chars` so an enormous abstract cannot blow up a prompt."""
    text = normalise_whitespace(strip_latex(text or ""))
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    return cut[: end + 1] if end > max_chars // 2 else cut.rsplit(" ", 1)[0]


def split_sentences(text: str) -> list[str]:
    """Sentences of a paragraph, not splitting after common abbreviations (`e.g.`, `et al.`)."""
    pieces = _SENTENCE_END.split(normalise_whitespace(text))
    sentences: list[str] = []
    for piece in pieces:
        if sentences and _ABBREVIATION.search(sentences[-1]):
            sentences[-1] += " " + piece
        else:
            sentences.append(piece)
    return [s for s in sentences if s]


def words(text: str) -> list[str]:
    return text.split()


def source_hash(*parts: str) -> str:
    """A stable hash of the text a summary was made from."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()
