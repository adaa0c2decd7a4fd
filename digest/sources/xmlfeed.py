"""Safe XML feed parsing: every RSS/Atom document goes through `parse_xml_feed`, which refuses entity
declarations (billion laughs, external entities pointing at local files) before feedparser sees the bytes,
and turns encoding trouble, truncation and non-feed pages into clear problems."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from xml.etree.ElementTree import ParseError

import feedparser
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring

from digest.errors import FeedError

# Options shared with the benchmark's bare-feedparser baseline. HTML is stripped afterwards by nh3.
FEEDPARSER_OPTIONS = {"sanitize_html": False, "resolve_relative_uris": False}
PROLOG_BYTES = 4096


def parse_xml_feed(content: bytes) -> tuple[feedparser.FeedParserDict, str | None]:
    """feedparser's result and the document's problem, if it was broken but still yielded something.

    Raises FeedError when the bytes are no feed at all (empty, HTML, entity declarations, unreadable)."""
    if not content.strip():
        raise FeedError("the response is empty")
    refuse_entity_declarations(content)
    problem = invalid_utf8(content)
    parsed = feedparser.parse(content, **FEEDPARSER_OPTIONS)
    if not parsed.version:
        raise FeedError(not_a_feed_reason(content, parsed))
    if parsed.bozo and problem is None and not isinstance(parsed.bozo_exception, feedparser.CharacterEncodingOverride):
        problem = f"malformed XML ({parsed.bozo_exception}); kept the entries that could be read"
    return parsed, problem


def refuse_entity_declarations(content: bytes) -> None:
    """A DOCTYPE that declares entities is refused: feeds never need one, and it is how entity bombs and
    external-entity reads of local files are built. Only documents with a DOCTYPE pay for the check."""
    if b"<!DOCTYPE" not in content[:PROLOG_BYTES] and b"<!doctype" not in content[:PROLOG_BYTES]:
        return
    try:
        defused_fromstring(content, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise FeedError(f"refused: the document declares XML entities ({type(exc).__name__})") from None
    except ParseError:
        if b"<!ENTITY" in content[:PROLOG_BYTES]:
            raise FeedError("refused: the document declares XML entities") from None


def invalid_utf8(content: bytes) -> str | None:
    """A problem message when a document that is (or claims to be) UTF-8 holds bytes that are not."""
    head = content[:200].lower()
    if b"encoding=" in head and b"utf-8" not in head:
        return None
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}; kept the entries as decoded with a fallback encoding"
    return None


def not_a_feed_reason(content: bytes, parsed: feedparser.FeedParserDict) -> str:
    head = content[:1024].lstrip().lower()
    if head.startswith(b"<!doctype html") or b"<html" in head:
        return "not a feed: the response is an HTML page"
    if parsed.bozo:
        return f"not a feed: unreadable XML ({parsed.bozo_exception})"
    return "not a feed: no RSS or Atom document found"


def entry_time(entry: feedparser.FeedParserDict, *names: str) -> datetime | None:
    """The first of feedparser's parsed dates (`published_parsed`, ...) the entry has, as aware UTC.
    Plain `dict.get` skips feedparser's deprecated updated->published key fallback."""
    for name in names:
        value: time.struct_time | None = dict.get(entry, name)
        if value:
            return datetime(*value[:6], tzinfo=timezone.utc)
    return None
