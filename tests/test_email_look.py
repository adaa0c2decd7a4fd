"""Look at it: the daily edition's email and archive page in real headless Chromium, at a desktop and a phone
width and in dark mode. Every theme heading and paper title must be visible and nothing may overflow sideways.
Screenshots go to test-artifacts/look/ (git-ignored) for a person to check."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.render import EditionRenderer, EmailLinks
from digest.render.archive import write_archive

pytestmark = pytest.mark.no_database  # nothing here opens the database: run once, not per database

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "look"
LINKS = EmailLinks("https://digest.test/archive/daily-2026-11-23.html", "https://digest.test/preferences",
                   "https://digest.test/unsubscribe")
VIEWS = [(1200, "light"), (375, "light"), (375, "dark")]


@pytest.fixture
def pages(config, corpus_edition, tmp_path) -> dict[str, Path]:
    """The edition's email HTML and its archive page, as files."""
    edition = corpus_edition(themes=4, per_theme=4)
    edition.content["themes"][1]["papers"][0]["title"] = (
        "A very long title with an unbreakable identifier Supercalifragilisticexpialidocious_ModelName_v2_final "
        "and <b>markup</b>, $\\LaTeX$ and emoji 🚀"
    )
    email = tmp_path / "email.html"
    email.write_text(EditionRenderer(config, edition).email(None, LINKS).html, encoding="utf-8")
    write_archive(config, [edition], tmp_path / "archive")
    return {"email": email, "archive": tmp_path / "archive" / "daily-2026-11-23.html"}


@pytest.mark.parametrize("kind", ["email", "archive"])
@pytest.mark.parametrize(("width", "scheme"), VIEWS)
def test_edition_reads_well_at_every_width(browser, pages, kind, width, scheme):
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page.goto(pages[kind].as_uri())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{kind}-{width}-{scheme}.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")

    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    headings = page.locator("h2")
    titles = page.locator("a.ptitle, span.ptitle" if kind == "email" else "article.paper h3")
    lead = page.locator("div.lead a" if kind == "email" else "section.lead a")
    assert headings.count() == 5 and headings.first.inner_text() == "Trending"  # the lead, then 4 themes
    assert titles.count() == 16 and lead.count() == 5
    for element in headings.all() + titles.all() + lead.all():
        assert element.is_visible()
        box = element.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, element.inner_text()
    page.close()


def test_dark_mode_changes_the_colours(browser, pages):
    colours = {}
    for scheme in ("light", "dark"):
        page = browser.new_page(viewport={"width": 375, "height": 900}, color_scheme=scheme)
        page.goto(pages["email"].as_uri())
        colours[scheme] = page.evaluate(
            "[getComputedStyle(document.querySelector('.card > table')).backgroundColor,"
            " getComputedStyle(document.querySelector('h2')).color]"
        )
        page.close()

    assert colours["light"] == ["rgb(255, 255, 255)", "rgb(31, 35, 40)"]
    assert colours["dark"] == ["rgb(22, 27, 34)", "rgb(230, 237, 243)"]
