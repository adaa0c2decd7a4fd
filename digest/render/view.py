"""What the templates see: an edition's stored content turned into small, display-ready objects.

Shortened author lists, link labels ("Code ★ 1.2k"), date labels and safe URLs are decided here, once, so the
email, text, Markdown and archive templates stay simple and agree with each other. Only http(s) URLs survive.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import date, datetime
from urllib.parse import urlsplit

from digest.editions import date_range_label, edition_file_name
from digest.models import Edition

MAX_AUTHORS_SHOWN = 3
# The lead: 3 to 5 papers across themes, shown when the edition has at least LEAD_MIN_PAPERS (fewer would only
# repeat the papers listed right below it).
LEAD_SIZES = (3, 5)
LEAD_MIN_PAPERS = 6


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class PaperView:
    id: int
    title: str
    url: str | None
    authors: str
    tldr: str
    links: tuple[Link, ...]
    reason: str
    score: float
    theme: str = ""
    upvotes: int = 0
    comments: int = 0
    stars: int = 0

    @property
    def anchor(self) -> str:
        return f"paper-{self.id}"

    @property
    def theme_anchor(self) -> str:
        return anchor_for(self.theme)

    @property
    def popularity(self) -> float:
        """Upvotes, comments and GitHub stars, log-scaled (upvotes count most); 0 when the source gives none."""
        return math.log10(1 + self.upvotes) + 0.5 * math.log10(1 + self.comments) + 0.5 * math.log10(1 + self.stars)

    @property
    def signals(self) -> str:
        """"159 upvotes, 12 comments" (empty when there are none)."""
        counts = ((self.upvotes, "upvote"), (self.comments, "comment"), (self.stars, "GitHub star"))
        return ", ".join(f"{n} {label}{'' if n == 1 else 's'}" for n, label in counts if n)


@dataclass(frozen=True)
class OverviewView:
    text: str
    cited: tuple[PaperView, ...]


@dataclass(frozen=True)
class ThemeView:
    name: str
    anchor: str
    overview: OverviewView | None
    papers: tuple[PaperView, ...]


@dataclass(frozen=True)
class EditionView:
    """An edition as shown. `omitted` counts papers cut to keep an email small; `other_themes` names the
    edition's themes left out because the reader did not choose them. Both are in the web version."""

    id: int
    title: str
    period: str
    start: date
    end: date
    date_label: str
    page_name: str
    themes: tuple[ThemeView, ...]
    built_at: datetime
    omitted: int = 0
    other_themes: tuple[str, ...] = ()

    @property
    def paper_count(self) -> int:
        return sum(len(theme.papers) for theme in self.themes)

    @property
    def lead(self) -> tuple[PaperView, ...]:
        """The papers the edition opens with: the most upvoted, discussed and starred across its themes (by rank
        where no source gives those signals), 3 to 5 of them, each still listed in full under its theme."""
        papers = [paper for theme in self.themes for paper in theme.papers]
        if len(papers) < LEAD_MIN_PAPERS:
            return ()
        size = min(LEAD_SIZES[1], max(LEAD_SIZES[0], len(papers) // 3))
        return tuple(sorted(papers, key=lambda p: (-p.popularity, -p.score, p.id))[:size])

    @property
    def lead_title(self) -> str:
        """What the lead is: trending papers when a source gave signals, else the top-ranked ones."""
        if not any(paper.popularity for paper in self.lead):
            return "Top papers"
        return "This week's most upvoted" if self.period == "weekly" else "Trending"

    def only_themes(self, names: frozenset[str]) -> EditionView:
        kept = tuple(theme for theme in self.themes if theme.name in names)
        others = tuple(theme.name for theme in self.themes if theme.name not in names)
        return replace(self, themes=kept, other_themes=self.other_themes + others)

    def without_lowest(self, count: int) -> EditionView:
        """The edition minus its `count` lowest-scoring papers (themes left empty disappear)."""
        ranked = sorted((paper.score, -paper.id) for theme in self.themes for paper in theme.papers)
        dropped = {-paper_id for _, paper_id in ranked[:count]}
        themes = tuple(
            replace(theme, papers=kept)
            for theme in self.themes
            if (kept := tuple(paper for paper in theme.papers if paper.id not in dropped))
        )
        return replace(self, themes=themes, omitted=self.omitted + self.paper_count - count_papers(themes))


def count_papers(themes: tuple[ThemeView, ...]) -> int:
    return sum(len(theme.papers) for theme in themes)


def edition_view(edition: Edition) -> EditionView:
    return EditionView(
        id=edition.id,
        title=edition.title,
        period=edition.period,
        start=edition.start_date,
        end=edition.end_date,
        date_label=date_range_label(edition.start_date, edition.end_date),
        page_name=edition_page_name(edition),
        themes=tuple(theme_view(theme) for theme in edition.content.get("themes", [])),
        built_at=edition.built_at,
    )


def edition_page_name(edition: Edition) -> str:
    """File name of the edition's archive page, also the last part of its web URL."""
    return edition_file_name(edition, ".html")


def theme_view(theme: dict) -> ThemeView:
    papers = tuple(paper_view(paper, theme["name"]) for paper in theme["papers"])
    return ThemeView(
        name=theme["name"],
        anchor=anchor_for(theme["name"]),
        overview=overview_view(theme.get("overview"), papers),
        papers=papers,
    )


def overview_view(overview: dict | None, papers: tuple[PaperView, ...]) -> OverviewView | None:
    if not overview or not overview.get("text"):
        return None
    by_id = {paper.id: paper for paper in papers}
    cited = tuple(by_id[paper_id] for paper_id in overview.get("cited", []) if paper_id in by_id)
    return OverviewView(text=overview["text"], cited=cited)


def paper_view(paper: dict, theme: str = "") -> PaperView:
    return PaperView(
        id=paper["paper_id"],
        title=paper.get("title") or "Untitled",
        url=safe_url(paper.get("abs_url")),
        authors=short_authors(paper.get("authors") or []),
        tldr=paper.get("tldr") or "",
        links=paper_links(paper),
        reason=paper.get("reason") or "",
        score=paper.get("score", 0.0),
        theme=theme,
        upvotes=paper.get("upvotes") or 0,
        comments=paper.get("comments") or 0,
        stars=paper.get("github_stars") or 0,
    )


def paper_links(paper: dict) -> tuple[Link, ...]:
    candidates = [
        ("PDF", paper.get("pdf_url")),
        (with_count("Code", "★", paper.get("github_stars")), paper.get("code_url")),
        (with_count("Hugging Face", "▲", paper.get("upvotes")), paper.get("hf_url")),
    ]
    return tuple(Link(label, url) for label, raw in candidates if (url := safe_url(raw)))


def with_count(label: str, symbol: str, count: int | None) -> str:
    return f"{label} {symbol} {compact_number(count)}" if count else label


def compact_number(count: int) -> str:
    """1234 -> "1.2k", 56 -> "56"."""
    if count < 1000:
        return str(count)
    return f"{count / 1000:.1f}".rstrip("0").rstrip(".") + "k"


def short_authors(authors: list[str]) -> str:
    """"A, B, C et al." beyond three authors; "" when none are known."""
    names = [name.strip() for name in authors if name and name.strip()]
    if len(names) > MAX_AUTHORS_SHOWN:
        return ", ".join(names[:MAX_AUTHORS_SHOWN]) + " et al."
    return ", ".join(names)


def safe_url(value: str | None) -> str | None:
    """The URL if it is an absolute http(s) address, else None (no javascript:, data: or relative links)."""
    if not value:
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or re.search(r"\s", value):
        return None
    return value


def anchor_for(name: str) -> str:
    """A stable, URL-safe anchor for a theme heading: "Image & video" -> "image-video"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "theme"
