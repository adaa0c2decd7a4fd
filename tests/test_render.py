"""Rendering: escaping of everything from feeds, template errors naming file and line, template overrides,
the size cap, the plain-text and Markdown outputs, personalisation per theme set, and the archive's feeds."""

from __future__ import annotations

import json
from datetime import datetime
from html.parser import HTMLParser

import feedparser
import pytest
from markupsafe import escape

from digest.config import load_config
from digest.errors import RenderError
from digest.render import EditionRenderer, EmailLinks
from digest.render.archive import write_archive
from conftest import BASE_CONFIG

pytestmark = pytest.mark.no_database  # nothing here opens the database: run once, not per database

LINKS = EmailLinks(
    web_url="https://digest.test/archive/daily-2026-11-23.html",
    preferences_url="https://digest.test/preferences?token=abc&id=7",
    unsubscribe_url="https://digest.test/unsubscribe?token=abc&id=7",
)
EVIL = '<script>alert(1)</script><img src=x onerror="alert(2)"><style>body{display:none}</style>'


class MarkupCollector(HTMLParser):
    """Every tag and attribute in a document, to check what a feed's text could have smuggled in."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.style_text: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(attrs)
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style_text.append(data)


def markup(document: str) -> MarkupCollector:
    collector = MarkupCollector()
    collector.feed(document)
    return collector


def assert_nothing_smuggled(document: str) -> None:
    found = markup(document)
    assert "script" not in found.tags and "img" not in found.tags
    assert not [name for name, _ in found.attributes if name.startswith("on")]
    assert not [value for name, value in found.attributes if name == "href" and value and value.startswith("javascript")]
    assert not [text for text in found.style_text if "display:none" in text]


def base_with_templates() -> str:
    """The test config with `templates_dir = "mine"` (a folder in the test's directory)."""
    return BASE_CONFIG.replace("[digest]\n", '[digest]\ntemplates_dir = "mine"\n')


def poisoned(edition):
    theme = edition.content["themes"][0]
    theme["name"] = "<b>Bold</b> theme"
    theme["overview"]["text"] = EVIL
    paper = theme["papers"][0]
    paper.update(title=f"Title {EVIL}", tldr=EVIL, reason=EVIL, authors=[EVIL], abs_url="javascript:alert(3)",
                 pdf_url="data:text/html,<script>alert(4)</script>", code_url='https://x.test/" onclick="alert(5)')
    return edition


def test_email_shows_every_theme_and_paper_with_links_reasons_and_footer(config, corpus_edition):
    edition = corpus_edition(themes=3, per_theme=4)
    email = EditionRenderer(config, edition).email(None, LINKS)

    for theme in edition.content["themes"]:
        assert f">{theme['name']}</h2>" in email.html
        assert f"== {theme['name']} ==" in email.text
        for paper in theme["papers"]:
            assert paper["abs_url"] in email.html and paper["abs_url"] in email.text
    assert "Ada Lovelace, Alan Turing, Grace Hopper et al." in email.html
    assert "Code ★ 1.2k" in email.html and "Hugging Face ▲ 42" in email.html
    assert "Why: matched keywords: diffusion; similarity 0.62" in email.html
    assert "Test Lab, 1 Test Street" in email.html and "Test Lab, 1 Test Street" in email.text
    assert email.subject == "Test digest: Monday 23 November 2026 · 12 new papers"
    assert email.preheader.startswith("Language models (4), Image and video generation (4), Agents (4). Top: ")
    assert 'name="color-scheme" content="light dark"' in email.html
    assert "prefers-color-scheme: dark" in email.html


def test_links_are_filled_per_reader_and_escaped_in_html(config, corpus_edition):
    email = EditionRenderer(config, corpus_edition()).email(None, LINKS)

    assert 'href="https://digest.test/unsubscribe?token=abc&amp;id=7"' in email.html
    assert 'href="https://digest.test/preferences?token=abc&amp;id=7"' in email.html
    assert "Unsubscribe: https://digest.test/unsubscribe?token=abc&id=7" in email.text
    assert "links.invalid" not in email.html + email.text


def test_text_from_feeds_is_escaped_everywhere(config, corpus_edition, tmp_path):
    edition = poisoned(corpus_edition())
    renderer = EditionRenderer(config, edition)
    email = renderer.email(None, LINKS)
    write_archive(config, [edition], tmp_path)

    for document in (email.html, (tmp_path / "daily-2026-11-23.html").read_text(), (tmp_path / "index.html").read_text()):
        assert_nothing_smuggled(document)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "&lt;b&gt;Bold&lt;/b&gt; theme" in email.html
    assert "javascript:" not in email.html and "data:text/html" not in email.html and "onclick" not in email.html
    entry = feedparser.parse(str(tmp_path / "feed.xml")).entries[0]
    assert_nothing_smuggled(entry.content[0].value)
    assert "<script>" not in json.loads((tmp_path / "feed.json").read_text())["items"][0]["content_html"]
    assert "\\<script\\>" in renderer.markdown()


def test_odd_titles_missing_authors_links_and_overview_render_cleanly(config, corpus_edition):
    edition = corpus_edition(themes=2, per_theme=2)
    theme = edition.content["themes"][0]
    theme["overview"] = None
    theme["papers"][0].update(title=r"Attention is $\mathcal{O}(n^2)$ & <i>all</i> you need 🚀", authors=[],
                              abs_url=None, pdf_url=None, code_url=None, hf_url=None, tldr="", reason="")
    renderer = EditionRenderer(config, edition)

    email = renderer.email(None, LINKS)

    assert r"Attention is $\mathcal{O}(n^2)$ &amp; &lt;i&gt;all&lt;/i&gt; you need 🚀" in email.html
    assert r"1. Attention is $\mathcal{O}(n^2)$ & <i>all</i> you need 🚀" in email.text
    first_paper = email.text.split("🚀")[1].split("\n2. ")[0]
    assert "Why:" not in first_paper and "Abstract:" not in first_paper
    assert r"**Attention is $\\mathcal{O}(n^2)$ & \<i\>all\</i\> you need 🚀**" in renderer.markdown()


def test_an_edition_with_no_themes_for_a_reader_says_so(config, corpus_edition):
    renderer = EditionRenderer(config, corpus_edition(themes=2))

    email = renderer.email(["Robotics"], LINKS)

    assert not renderer.has_papers_for(["Robotics"]) and renderer.has_papers_for(["Language models"])
    assert "None of your themes has new papers this time" in email.html
    assert "Also in this edition: Language models, Image and video generation" in email.text


def test_each_reader_gets_only_their_themes(config, corpus_edition):
    edition = corpus_edition(themes=3, per_theme=2)
    renderer = EditionRenderer(config, edition)
    other = EmailLinks("https://digest.test/w", "https://digest.test/p?id=8", "https://digest.test/u?id=8")

    agents = renderer.email(["Agents", "Not a theme"], LINKS)
    agents_again = renderer.email(["Agents"], other)
    everything = renderer.email([], LINKS)

    agent_titles = [paper["title"] for paper in edition.content["themes"][2]["papers"]]
    language_titles = [paper["title"] for paper in edition.content["themes"][0]["papers"]]
    assert all(title[:40] in agents.text for title in agent_titles)
    assert not any(title[:40] in agents.text for title in language_titles)
    assert "Also in this edition: Language models, Image and video generation" in agents.text
    assert agents.subject.endswith("· 2 new papers") and everything.subject.endswith("· 6 new papers")
    assert agents_again.html.replace("id=8", "token=abc&amp;id=7").replace("https://digest.test/w", LINKS.web_url) \
        .replace("/p?", "/preferences?").replace("/u?", "/unsubscribe?") == agents.html


def test_oversized_email_drops_lowest_ranked_papers_and_points_to_the_web_version(write_config, corpus_edition):
    config = load_config(write_config("[edition]\nmax_html_bytes = 30000\n"))
    edition = corpus_edition(themes=5, per_theme=10)
    scores = sorted((paper["score"], paper["title"]) for theme in edition.content["themes"] for paper in theme["papers"])

    email = EditionRenderer(config, edition).email(None, LINKS)

    assert len(email.html.encode()) <= 30000
    dropped = int(email.text.split(" more papers in the web version")[0].rsplit("\n", 1)[-1])
    assert 0 < dropped < 50
    assert f"{dropped} more papers in the web version →" in email.html
    assert email.subject.endswith(f"· {50 - dropped} new papers")
    shown = [title for _, title in scores if str(escape(title)) in email.html]
    assert shown == [title for _, title in scores[dropped:]]


def test_plain_text_part_is_its_own_template_not_stripped_html(config, corpus_edition):
    email = EditionRenderer(config, corpus_edition(themes=1, per_theme=2)).email(None, LINKS)

    assert "<" not in email.text.replace("<i>", "")
    assert email.text.startswith("Test digest\nMonday 23 November 2026 · 2 papers\nWeb version: https://digest.test/")
    assert "\n1. " in email.text and "   Abstract: https://arxiv.org/abs/" in email.text
    assert all(len(line) <= 72 or "http" in line for line in email.text.splitlines())


def test_markdown_has_headings_links_and_escapes(config, corpus_edition):
    edition = corpus_edition(themes=2, per_theme=2)
    edition.content["themes"][0]["papers"][0]["title"] = "A *bold* claim_with [brackets]"
    edition.content["themes"][0]["papers"][0]["abs_url"] = "https://example.org/paper_(v2)"

    markdown = EditionRenderer(config, edition).markdown()

    assert markdown.startswith("# Test digest: Monday 23 November 2026\n")
    assert "\n## Language models\n" in markdown and "\n## Image and video generation\n" in markdown
    assert r"[A \*bold\* claim\_with \[brackets\]](https://example.org/paper_%28v2%29)" in markdown
    assert "[Code ★ 1.2k](https://github.com/example/code)" in markdown


def test_unknown_variable_in_an_override_names_the_file_and_line(write_config, tmp_path, corpus_edition):
    (tmp_path / "mine" / "email").mkdir(parents=True)
    (tmp_path / "mine" / "email" / "edition.txt.j2").write_text("Hello\n{{ edition.title }}\n{{ no_such_thing }}\n")
    config = load_config(write_config(base=base_with_templates()))

    with pytest.raises(RenderError, match=r"mine/email/edition\.txt\.j2, line 3: 'no_such_thing' is undefined"):
        EditionRenderer(config, corpus_edition()).email(None, LINKS)


def test_template_syntax_error_names_the_file_and_line(write_config, tmp_path, corpus_edition):
    (tmp_path / "mine" / "markdown").mkdir(parents=True)
    (tmp_path / "mine" / "markdown" / "edition.md.j2").write_text("# {{ edition.title }}\n\n{% for x in %}\n")
    config = load_config(write_config(base=base_with_templates()))

    with pytest.raises(RenderError, match=r"mine/markdown/edition\.md\.j2, line 3"):
        EditionRenderer(config, corpus_edition()).markdown()


def test_invalid_mjml_names_the_template(write_config, tmp_path, corpus_edition):
    (tmp_path / "mine" / "email").mkdir(parents=True)
    (tmp_path / "mine" / "email" / "edition.mjml.j2").write_text("<mjml><mj-body><mj-section></mj-body></mjml>")
    config = load_config(write_config(base=base_with_templates()))

    with pytest.raises(RenderError, match=r"email/edition\.mjml\.j2: invalid MJML"):
        EditionRenderer(config, corpus_edition()).email(None, LINKS)


def test_templates_dir_overrides_only_the_templates_it_has(write_config, tmp_path, corpus_edition):
    (tmp_path / "mine" / "email").mkdir(parents=True)
    (tmp_path / "mine" / "email" / "edition.txt.j2").write_text("{{ edition.paper_count }} papers, see {{ links.web_url }}\n")
    config = load_config(write_config(base=base_with_templates()))

    email = EditionRenderer(config, corpus_edition(themes=1, per_theme=3)).email(None, LINKS)

    assert email.text == f"3 papers, see {LINKS.web_url}\n"
    assert "<mj-" not in email.html and "View in browser" in email.html


def test_archive_feeds_parse_back_and_pages_have_theme_anchors(config, corpus_edition, tmp_path):
    newer = corpus_edition(themes=2, per_theme=2, edition_id=2)
    older = corpus_edition(themes=1, per_theme=3, first=20, edition_id=1)
    older.start_date = older.end_date = newer.start_date.replace(day=20)
    older.title = "Test digest: Friday 20 November 2026"

    index = write_archive(config, [newer, older], tmp_path)

    atom = feedparser.parse(str(tmp_path / "feed.xml"))
    assert not atom.bozo and atom.version == "atom10"
    assert atom.feed.title == "Test digest" and atom.feed.id == "http://digest.test/archive/"
    assert [entry.title for entry in atom.entries] == [newer.title, older.title]
    assert atom.entries[0].link == "http://digest.test/archive/daily-2026-11-23.html"
    assert newer.content["themes"][0]["papers"][0]["title"][:30] in atom.entries[0].content[0].value
    page = (tmp_path / "daily-2026-11-23.html").read_text()
    assert 'id="language-models"' in page and 'id="image-and-video-generation"' in page
    assert 'href="daily-2026-11-20.html"' in index.read_text()


def test_json_feed_has_the_fields_the_spec_requires(config, corpus_edition, tmp_path):
    write_archive(config, [corpus_edition()], tmp_path)

    feed = json.loads((tmp_path / "feed.json").read_text())

    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] == "Test digest"
    assert feed["feed_url"] == "http://digest.test/archive/feed.json"
    item = feed["items"][0]
    assert item["id"] == item["url"] == "http://digest.test/archive/daily-2026-11-23.html"
    assert item["content_html"] and item["date_published"] == "2026-11-23T07:00:00Z"
    assert json_feed_problems(feed) == []


def json_feed_problems(feed: dict) -> list[str]:
    """What JSON Feed 1.1 (jsonfeed.org/version/1.1) requires: version, title, items; every item an `id` string
    and `content_html` or `content_text`; URLs absolute; dates RFC 3339. (feedparser 6.0 reads no JSON Feed.)"""
    problems = [f"missing {key}" for key in ("version", "title", "items") if key not in feed]
    for key in ("home_page_url", "feed_url"):
        if not str(feed.get(key, "http://")).startswith(("http://", "https://")):
            problems.append(f"{key} not absolute")
    for number, item in enumerate(feed.get("items", [])):
        if not isinstance(item.get("id"), str) or not item["id"]:
            problems.append(f"item {number}: id must be a non-empty string")
        if not (item.get("content_html") or item.get("content_text")):
            problems.append(f"item {number}: needs content_html or content_text")
        for key in ("date_published", "date_modified"):
            if key in item:
                try:
                    datetime.fromisoformat(item[key].replace("Z", "+00:00"))
                except ValueError:
                    problems.append(f"item {number}: {key} is not RFC 3339")
    return problems


def lead_edition(corpus_edition, upvotes: dict[int, int], period: str = "daily"):
    """A 3-theme, 12-paper edition whose papers have the given upvotes (by paper id) and no other signals."""
    edition = corpus_edition(themes=3, per_theme=4)
    for theme in edition.content["themes"]:
        for paper in theme["papers"]:
            paper["upvotes"], paper["github_stars"] = upvotes.get(paper["paper_id"]), None
    edition.period = edition.content["period"] = period
    return edition


def test_an_edition_leads_with_its_trending_papers_in_every_format(config, corpus_edition):
    edition = lead_edition(corpus_edition, {11: 159, 2: 40, 7: 12, 5: 3})
    titles = {p["paper_id"]: p["title"] for t in edition.content["themes"] for p in t["papers"]}
    renderer = EditionRenderer(config, edition)

    email = renderer.email(None, LINKS)
    markdown = renderer.markdown()

    assert [p.id for p in renderer.view.lead] == [11, 2, 7, 5]  # 12 papers: a lead of 4, most upvoted first
    lead_html = email.html.split("Trending", 1)[1].split(titles[1][:30], 1)[0]
    assert [lead_html.index(f'href="#paper-{i}"') for i in (11, 2, 7)] == sorted(lead_html.index(f'href="#paper-{i}"') for i in (11, 2, 7))
    assert all(f'id="paper-{i}"' in email.html for i in titles)
    assert "159 upvotes" in lead_html
    text_lead = email.text.split("== Trending ==", 1)[1].split("== Language models ==", 1)[0]
    assert text_lead.index(titles[11][:25]) < text_lead.index(titles[2][:25]) < text_lead.index(titles[7][:25])
    assert "In full below, under Agents" in text_lead and "159 upvotes" in text_lead
    md_lead = markdown.split("## Trending", 1)[1].split("## Language models", 1)[0]
    assert md_lead.count("\n1. ") + md_lead.count("\n4. ") == 2 and "(#agents)" in md_lead


def test_a_personalised_email_leads_with_trending_papers_of_the_readers_themes(config, corpus_edition):
    edition = lead_edition(corpus_edition, {11: 159, 2: 40, 7: 12, 5: 3, 6: 1})
    renderer = EditionRenderer(config, edition)
    two_themes = renderer.email(["Language models", "Image and video generation"], LINKS)
    view = renderer.view.only_themes(frozenset({"Language models", "Image and video generation"}))
    assert [p.id for p in view.lead] == [2, 7, 5]  # paper 11 is in Agents
    assert 'href="#paper-11"' not in two_themes.html and 'href="#paper-2"' in two_themes.html


def test_without_signals_the_lead_is_the_top_ranked_and_a_weekly_lead_is_the_most_upvoted(config, corpus_edition):
    plain = EditionRenderer(config, lead_edition(corpus_edition, {}))
    assert plain.view.lead_title == "Top papers" and [p.id for p in plain.view.lead] == [1, 2, 3, 4]
    weekly = EditionRenderer(config, lead_edition(corpus_edition, {9: 80}, period="weekly"))
    assert weekly.view.lead_title == "This week's most upvoted" and weekly.view.lead[0].id == 9
    small = EditionRenderer(config, corpus_edition(themes=1, per_theme=5))
    assert small.view.lead == () and "Trending" not in small.email(None, LINKS).html
