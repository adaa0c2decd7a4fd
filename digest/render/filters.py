"""Jinja filters for the plain-text and Markdown templates (HTML escaping is Jinja's autoescape)."""

from __future__ import annotations

import re
import textwrap

MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-!|~>])")


def markdown_escape(value: str) -> str:
    """Text that Markdown (GitHub, Slack, blogs) shows literally: no accidental emphasis, links or HTML."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(value))


def wrap(value: str, width: int = 72, indent: str = "") -> str:
    """Plain-text paragraph wrapped for mail readers; URLs are never broken."""
    return textwrap.fill(
        str(value), width=width, initial_indent=indent, subsequent_indent=indent,
        break_long_words=False, break_on_hyphens=False,
    )


FILTERS = {"md": markdown_escape, "wrap": wrap}
