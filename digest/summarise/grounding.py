"""The grounding check: a generated summary may not bring in names, acronyms, numbers or model and dataset names
that its source does not contain, and must be a finished, non-repetitive answer rather than an echo of the prompt.

`tidy` first removes harmless wrapping (a "TL;DR:" label, quotes, extra sentences beyond the allowed number);
`problems` then lists what is wrong, an empty list meaning the summary passes.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

from digest.text import normalise_whitespace, split_sentences, words

_LABEL = re.compile(r"^\s*(?:\*\*)?(?:tl;?dr|summary|overview|answer|one[- ]sentence summary)(?:\*\*)?\s*[:\-–]\s*", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# A number with at most a unit after it (`12.4%`, `3x`, `7B`): checked as a number, not as a name.
_QUANTITY = re.compile(r"\d[\d.,]*(?:x|×|%|k|K|M|B)?")
# Where a name may be joined differently in the source: at separators, and between letters and digits.
_NAME_PARTS = re.compile(r"[\-–/_]+|(?<=[A-Za-z])(?=\d)")
_CLAUSE_BREAK = re.compile(r"[,;:]\s|\s(?=(?:which|while)\s)")
_TOKEN_EDGE = re.compile(r"^[^\w]+|[^\w]+$")
_FINAL = re.compile(r"[.!?][\"')\]]?$")
_PROMPT_ECHOES = (
    "tl;dr", "abstract:", "title:", "papers:", "in one sentence", "at most", "words or fewer", "you write",
    "you are", "the user", "i cannot", "as an ai", "here is", "here's", "sure,",
)
# Capitalised words that start sentences or are plain English, not names.
_COMMON = set(
    "a an and as at by for from in into it its of on or our that the their these this those to we with while "
    "using based both each new novel first finally furthermore moreover however overall specifically experiments "
    "results paper papers researchers authors study work method approach model models framework".split()
)
REPEAT_NGRAM = 4
# Phrases that fill a TL;DR without saying anything about the paper.
FILLER_PHRASES = (
    "in the field of", "key finding", "key aspect", "novel approach", "a significant step", "paves the way", "paving the way",
    "has the potential", "plays a crucial role", "crucial role", "valuable insights", "a promising",
    "improve the performance of", "improving the performance of", "the effectiveness of", "in various",
    "a wide range of", "in recent years", "has made significant", "significant progress",
)


def tidy(text: str, max_sentences: int) -> str:
    """The answer without a leading label, wrapping quotes, sentences beyond `max_sentences`, or an unfinished
    last sentence after finished ones (where generation hit its token limit)."""
    text = normalise_whitespace(_LABEL.sub("", text or ""))
    text = text.strip("\"'`*").strip()
    sentences = split_sentences(text)[:max_sentences]
    if len(sentences) > 1 and not _FINAL.search(sentences[-1]):
        sentences.pop()
    return " ".join(sentences)


def problems(summary: str, source: str, max_words: int | None = None, min_sentences: int = 1) -> list[str]:
    """What makes `summary` unacceptable as a summary of `source` (empty list: it passes)."""
    if not summary.strip():
        return ["empty"]
    found = [
        *shape_problems(summary, max_words, min_sentences),
        *echo_problems(summary),
        *repetition_problems(summary, source),
    ]
    unsupported = unsupported_terms(summary, source)
    if unsupported:
        found.append("not in source: " + ", ".join(unsupported))
    return found


def shape_problems(summary: str, max_words: int | None, min_sentences: int) -> list[str]:
    found = []
    count = len(words(summary))
    if max_words is not None and count > max_words:
        found.append(f"too long ({count} words, limit {max_words})")
    if not _FINAL.search(summary.strip()):
        found.append("unfinished (does not end a sentence)")
    if len(split_sentences(summary)) < min_sentences:
        found.append(f"fewer than {min_sentences} sentences")
    return found


def echo_problems(summary: str) -> list[str]:
    lowered = summary.lower()
    echoed = [phrase for phrase in _PROMPT_ECHOES if phrase in lowered]
    return [f"echoes the prompt ({echoed[0]!r})"] if echoed else []


def filler_phrases(summary: str) -> list[str]:
    """The filler phrases in `summary`."""
    lowered = summary.lower()
    return [phrase for phrase in FILLER_PHRASES if phrase in lowered]


def filler_problems(summary: str) -> list[str]:
    found = filler_phrases(summary)
    return [f"filler ({found[0]!r})"] if found else []


def clause_cuts(summary: str, min_words: int = 8) -> list[str]:
    """Shorter versions of a one-sentence summary, cut at a clause break (a comma, semicolon or colon, or before
    "which" or "while") and closed with a full stop, longest first; none shorter than `min_words`."""
    cuts = []
    for match in reversed(list(_CLAUSE_BREAK.finditer(summary))):
        head = summary[: match.start()].rstrip(" ,;:")
        if len(words(head)) >= min_words:
            cuts.append(head + ".")
    return cuts


def repeated_sentences(summary: str, texts: list[str], min_words: int = 6) -> list[str]:
    """The sentences of `summary` that repeat a sentence of `texts` (one holding the other, ignoring case and
    punctuation; sentences shorter than `min_words` do not count)."""
    def key(sentence: str) -> str:
        return " ".join(re.findall(r"\w+", sentence.lower()))

    shown = [key(s) for text in texts for s in split_sentences(text)]
    shown = [s for s in shown if len(s.split()) >= min_words]
    return [
        sentence for sentence in split_sentences(summary)
        if (mine := key(sentence)) and any(mine in other or (len(mine.split()) >= min_words and other in mine) for other in shown)
    ]


def ngrams(text: str) -> Counter[tuple[str, ...]]:
    tokens = [w.lower().strip(".,;:") for w in words(text)]
    return Counter(tuple(tokens[i : i + REPEAT_NGRAM]) for i in range(len(tokens) - REPEAT_NGRAM + 1))


def repetition_problems(summary: str, source: str) -> list[str]:
    """A 4-word phrase used more often than in the source: the model is looping (an overview may say "this paper
    proposes a" twice when its sources say it four times)."""
    in_source = ngrams(source)
    repeated = [" ".join(gram) for gram, n in ngrams(summary).items() if n > max(1, in_source[gram])]
    return [f"repeats itself ({repeated[0]!r})"] if repeated else []


def unsupported_terms(summary: str, source: str) -> list[str]:
    """Numbers and name-like words (acronyms, CamelCase, capitalised mid-sentence, with digits) of the
    summary that the source does not contain, in order of appearance."""
    source_numbers = {n.replace(",", "") for n in _NUMBER.findall(source)}
    source_lower = source.lower()
    missing: list[str] = []
    for term in candidate_terms(summary):
        if _NUMBER.fullmatch(term):
            ok = term.replace(",", "") in source_numbers
        else:
            ok = name_in_source(term, source_lower)
        if not ok and term not in missing:
            missing.append(term)
    return missing


def candidate_terms(summary: str) -> list[str]:
    """The words of a summary that would be facts if the model made them up."""
    terms: list[str] = []
    for sentence in split_sentences(summary):
        for position, raw in enumerate(words(sentence)):
            token = _bare(raw)
            if _QUANTITY.fullmatch(token):
                terms.extend(_NUMBER.findall(token))
            elif token and _is_name_like(token, first_in_sentence=position == 0):
                terms.append(token)
    return terms


def _is_name_like(token: str, first_in_sentence: bool) -> bool:
    if token.lower() in _COMMON or not any(c.isalpha() for c in token):
        return False
    has_digit = any(c.isdigit() for c in token)
    inner_capital = any(c.isupper() for c in token[1:])
    capitalised = token[0].isupper() and not first_in_sentence
    return has_digit or inner_capital or capitalised


def name_in_source(term: str, source_lower: str) -> bool:
    """Whether a name appears whole in the (lower-cased) source: its parts in the same order, joined by a hyphen,
    slash, space or nothing (`Llama-7B`, `Llama 7B`, `Llama7B`), a plural allowed, and not as a piece of a longer
    name (`GPT-4` is not in `GPT-4o`, `Llama-40b` is not in "Llama-7b and Falcon-40b"). A compound ending in
    plain lower-case words (`ControlNet-style`, `GPT-4-based`) needs only its name."""
    parts = [p for p in _NAME_PARTS.split(term) if p]
    while parts:
        if any(_name_pattern(tuple(p.lower() for p in form)).search(source_lower) for form in _singular_forms(parts)):
            return True
        if len(parts) == 1 or not re.fullmatch(r"[a-z]{3,}", parts[-1]):
            return False
        parts = parts[:-1]
    return False


def _singular_forms(parts: list[str]) -> list[list[str]]:
    """The name as written, and without a plural or possessive ending on its last part."""
    singular = re.sub(r"(?<=[A-Za-z0-9])'?s$", "", parts[-1])
    return [parts] if singular in (parts[-1], "") else [parts, parts[:-1] + [singular]]


@lru_cache(maxsize=4096)
def _name_pattern(parts: tuple[str, ...]) -> re.Pattern[str]:
    body = r"[\s\-–/_]?".join(re.escape(p) for p in parts)
    return re.compile(rf"(?<![\w]){body}(?:e?s|'s)?(?![\w]|[.,]\d)")


def _bare(token: str) -> str:
    return _TOKEN_EDGE.sub("", token)
