"""Rendering: an edition's stored content as a responsive email (MJML), plain text, Markdown and archive pages.

`EditionRenderer.email` is what delivery calls once per subscriber: each distinct theme set is rendered once
with placeholder links, and the subscriber's own links are substituted afterwards (HTML-escaped), so
personalised mail costs a few string replacements. `edition_outputs` is what an edition stores of itself (the
email with public links, and the Markdown). What goes into an edition is decided by `digest.editions`; the static
archive and its feeds are in `digest.render.archive`.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import astuple, dataclass
from html import escape

from digest.config import Config
from digest.models import Edition
from digest.render.templating import compile_mjml, render_template, template_environment
from digest.render.view import EditionView, edition_view

EMAIL_TEMPLATE = "email/edition.mjml.j2"
TEXT_TEMPLATE = "email/edition.txt.j2"
MARKDOWN_TEMPLATE = "markdown/edition.md.j2"
# Room kept under `max_html_bytes` for real links, which may be longer than the placeholders they replace.
LINK_HEADROOM_BYTES = 3_000
PREHEADER_CHARS = 140


@dataclass(frozen=True)
class EmailLinks:
    web_url: str
    preferences_url: str
    unsubscribe_url: str


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str


def public_links(config: Config, view: EditionView) -> EmailLinks:
    """Links for copies not addressed to anyone (the stored edition, `digest build`): the archive page and the
    web app's generic preferences and unsubscribe pages."""
    base = config.digest.base_url.rstrip("/")
    return EmailLinks(f"{base}/archive/{view.page_name}", f"{base}/preferences", f"{base}/unsubscribe")


class EditionRenderer:
    """Renders one edition in every format; emails are cached per theme set."""

    def __init__(self, config: Config, edition: Edition) -> None:
        self.config = config
        self.view = edition_view(edition)
        self.env = template_environment(config)
        self.placeholders = EmailLinks(*(f"https://links.invalid/{secrets.token_hex(12)}" for _ in range(3)))
        self._emails: dict[frozenset[str], RenderedEmail] = {}

    @property
    def public_links(self) -> EmailLinks:
        return public_links(self.config, self.view)

    def email(self, themes: list[str] | None, links: EmailLinks) -> RenderedEmail:
        """The email for a reader of `themes` (None or empty: all themes) with that reader's links."""
        key = self.theme_set(themes)
        if key not in self._emails:
            self._emails[key] = self._render_email(key)
        return fill_links(self._emails[key], self.placeholders, links)

    def has_papers_for(self, themes: list[str] | None) -> bool:
        """Whether a reader of `themes` would find any paper in this edition."""
        return bool(self.theme_set(themes))

    def theme_set(self, themes: list[str] | None) -> frozenset[str]:
        """The edition's themes a reader sees: all of them for None or [], else those they chose."""
        present = frozenset(theme.name for theme in self.view.themes)
        return present if not themes else present & frozenset(themes)

    def markdown(self) -> str:
        return render_template(self.env, MARKDOWN_TEMPLATE, edition=self.view, links=self.public_links,
                               digest=self.config.digest)

    def _render_email(self, theme_set: frozenset[str]) -> RenderedEmail:
        view = self.view.only_themes(theme_set)
        html = self._email_html(view)
        budget = self.config.edition.max_html_bytes - LINK_HEADROOM_BYTES
        while (size := len(html.encode())) > budget and view.paper_count > 1:
            view = view.without_lowest(cut_count(size, budget, view.paper_count))
            html = self._email_html(view)
        text = render_template(self.env, TEXT_TEMPLATE, **self._email_context(view))
        return RenderedEmail(subject(view), preheader(view), html, text)

    def _email_html(self, view: EditionView) -> str:
        return compile_mjml(render_template(self.env, EMAIL_TEMPLATE, **self._email_context(view)), EMAIL_TEMPLATE)

    def _email_context(self, view: EditionView) -> dict:
        return {
            "edition": view,
            "links": self.placeholders,
            "digest": self.config.digest,
            "subject": subject(view),
            "preheader": preheader(view),
        }


def edition_outputs(config: Config, edition: Edition) -> tuple[str, str, str]:
    """A ready edition's stored outputs: its email HTML and text with the public links, and its Markdown."""
    renderer = EditionRenderer(config, edition)
    email = renderer.email(None, renderer.public_links)
    return email.html, email.text, renderer.markdown()


def cut_count(size: int, budget: int, paper_count: int) -> int:
    """How many papers to drop to get from `size` to `budget` bytes, assuming papers share the size evenly
    (an underestimate, since part of the size is fixed; the caller repeats until it fits)."""
    return min(paper_count - 1, max(1, math.ceil((size - budget) / (size / paper_count))))


def fill_links(email: RenderedEmail, placeholders: EmailLinks, links: EmailLinks) -> RenderedEmail:
    html, text = email.html, email.text
    for token, url in zip(astuple(placeholders), astuple(links), strict=True):
        html = html.replace(token, escape(url, quote=True))
        text = text.replace(token, url)
    return RenderedEmail(email.subject, email.preheader, html, text)


def subject(view: EditionView) -> str:
    count = view.paper_count
    return f"{view.title} · {count} new paper{'' if count == 1 else 's'}"


def preheader(view: EditionView) -> str:
    """The hidden line inbox lists show after the subject: themes with counts, then the top paper."""
    themes = ", ".join(f"{theme.name} ({len(theme.papers)})" for theme in view.themes)
    top = max((paper for theme in view.themes for paper in theme.papers), key=lambda p: p.score, default=None)
    line = f"{themes}. Top: {top.title}" if top else "No new papers in your themes."
    return line if len(line) <= PREHEADER_CHARS else line[: PREHEADER_CHARS - 1].rstrip() + "…"
