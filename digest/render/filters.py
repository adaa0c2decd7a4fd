"""Jinja filters for the plain-text and Markdown templates (HTML escaping is Jinja's autoescape)."""

from __future__ import annotations

import re
import textwrap

# Only what changes meaning mid-line: Slack shows other backslash escapes literally, so they are not added.
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def markdown_escape(value: str) -> str:
    """Text that Markdown (GitHub, Slack, blogs) shows literally: no accidental emphasis, links or HTML."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(value))


def markdown_url(value: str) -> str:
    """A URL that cannot end a Markdown link early: parentheses, spaces and angle brackets percent-encoded."""
    return str(value).translate({ord("("): "%28", ord(")"): "%29", ord(" "): "%20", ord("<"): "%3C", ord(">"): "%3E"})


def wrap(value: str, width: int = 72, indent: str = "") -> str:
    """Plain-text paragraph wrapped for mail readers; URLs are never broken."""
    return textwrap.fill(
        str(value), width=width, initial_indent=indent, subsequent_indent=indent,
        break_long_words=False, break_on_hyphens=False,
    )


FILTERS = {"md": markdown_escape, "md_url": markdown_url, "wrap": wrap}
