"""The plain data a source produces (`PaperEntry`, `Listing`, built from a fetched body by `listing_from`) and the
text cleaning every source kind shares:
HTML stripped, entities unescaped, TeX accents decoded, titles normalised for dedup."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import nh3

from digest.sources.fetch import Fetched


@dataclass
class PaperEntry:
    """One paper as a source listed it. `key` is the canonical id (`arxiv:<id>` or `url:<link>`)."""

    key: str
    title: str
    abstract: str
    authors: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    abs_url: str | None = None
    pdf_url: str | None = None
    code_url: str | None = None
    announce_type: str | None = None
    published_at: datetime | None = None
    updated_at: datetime | None = None
    arxiv_id: str | None = None
    version: int | None = None
    upvotes: int | None = None
    num_comments: int | None = None
    github_repo: str | None = None
    github_stars: int | None = None
    keywords: list[str] = field(default_factory=list)
    thumbnail_url: str | None = None
    guid: str | None = None

    @property
    def title_norm(self) -> str:
        return normalise_title(self.title)


@dataclass
class Listing:
    """What one read of a source produced. `problem` is set when the feed itself was broken (truncated,
    badly encoded): the entries recovered from it are still kept, but the read counts as failed."""

    entries: list[PaperEntry] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    problem: str | None = None
    not_modified: bool = False
    http_status: int | None = None
    etag: str | None = None
    last_modified: str | None = None

    @property
    def seen(self) -> int:
        return len(self.entries) + len(self.invalid)


def listing_from(fetched: Fetched, parse: Callable[[bytes], Listing]) -> Listing:
    """Parse a fetched body (or pass a 304 through) and carry the HTTP status and validators along."""
    listing = Listing(not_modified=True) if fetched.not_modified else parse(fetched.content)
    listing.http_status = fetched.http_status
    listing.etag, listing.last_modified = fetched.etag, fetched.last_modified
    return listing


def clean_text(value: str | None) -> str:
    """Plain text for storing and showing: every HTML tag stripped, entities unescaped, whitespace collapsed."""
    if not value:
        return ""
    if "<" in value or "&" in value:
        value = html.unescape(nh3.clean(value, tags=set()))
    return " ".join(value.split())


TITLE_NOISE = re.compile(r"[\W_]+")


def normalise_title(title: str) -> str:
    """Lower-case letters and digits only, single-spaced: the same title from two feeds compares equal."""
    text = title.casefold()
    if not text.isascii():
        text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return TITLE_NOISE.sub(" ", text).strip()[:512]


TEX_ACCENTS = {
    "'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303", "=": "\u0304", ".": "\u0307",
    "u": "\u0306", "v": "\u030c", "H": "\u030b", "c": "\u0327", "k": "\u0328", "r": "\u030a",
}
TEX_LETTERS = {"ss": "ß", "o": "ø", "O": "Ø", "aa": "å", "AA": "Å", "ae": "æ", "AE": "Æ", "l": "ł", "L": "Ł"}
# {\'e}, \'e, \'{e}, \c{c}, \c c, \v{s}, with an optional brace group around the whole escape.
TEX_ACCENT = re.compile(r"""\{?\\(?:([`'^"~=.])\s*|([uvHckr])(?:\s+|(?=\{)))\{?(\\i|[A-Za-z])\}?\}?""")
TEX_LETTER = re.compile(r"\{?\\(ss|aa|AA|ae|AE|[oOlL])(?![A-Za-z])\}?")


def decode_tex(text: str) -> str:
    """Decode the TeX accent escapes arXiv keeps in author names: `Andr\\'e` -> `André`, `{\\"o}` -> `ö`."""
    if "\\" not in text:
        return text
    text = TEX_ACCENT.sub(_accented, text)
    text = TEX_LETTER.sub(lambda match: TEX_LETTERS[match.group(1)], text)
    return unicodedata.normalize("NFC", text)


def _accented(match: re.Match) -> str:
    accent = TEX_ACCENTS[match.group(1) or match.group(2)]
    letter = "i" if match.group(3) == "\\i" else match.group(3)
    return letter + accent


def clean_name(name: str) -> str:
    return clean_text(decode_tex(name))


def split_authors(names: str) -> list[str]:
    """arXiv's one comma-joined author string as a list of clean names."""
    return [name for name in map(clean_name, names.split(",")) if name]


class InvalidEntry(Exception):
    """One entry cannot be used (no title, no abstract, no id); it is skipped and counted, the rest are kept."""


def collect_entries(
    items: Iterable[Any], make_entry: Callable[[Any], PaperEntry], problem: str | None = None, label: str = "entry"
) -> Listing:
    """A Listing of the items `make_entry` accepts; each one it rejects is counted with its position and reason."""
    listing = Listing(problem=problem)
    for index, item in enumerate(items, 1):
        try:
            listing.entries.append(make_entry(item))
        except InvalidEntry as exc:
            listing.invalid.append(f"{label} {index}: {exc}")
    return listing


def require_title_and_abstract(title: str, abstract: str) -> None:
    if not title:
        raise InvalidEntry("no title")
    if not abstract:
        raise InvalidEntry(f"{title[:80]!r} has no abstract")
