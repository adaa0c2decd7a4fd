"""Sources: real feed formats in, plain PaperEntry dataclasses out; bad input gives a clear FeedError or a
counted invalid entry, never a crash or a read of anything but the feed."""

from __future__ import annotations

import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

import pytest

from digest.config import SourceSettings
from digest.errors import FeedError
from digest.sources import PaperEntry, keep_entry
from digest.sources.arxiv import parse_api_page, parse_arxiv_id, parse_listing
from digest.sources.entry import clean_text, decode_tex, normalise_title, split_authors
from digest.sources.feed import normalise_url, parse_feed
from digest.sources.hf import parse_daily

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_arxiv_rss_listing_gives_one_entry_per_item_with_announce_type_and_version():
    listing = parse_listing(fixture("arxiv_rss.xml"))
    assert listing.problem is None and listing.invalid == []
    assert [e.announce_type for e in listing.entries] == ["new", "new", "new", "cross", "replace", "replace-cross"]
    assert [e.version for e in listing.entries] == [1, 1, 1, 1, 2, 3]
    first = listing.entries[0]
    assert first.key == "arxiv:2407.01000" and first.arxiv_id == "2407.01000"
    assert first.title.startswith("AnyControl: Create Your Artwork")
    assert first.abstract.startswith("The field of text-to-image (T2I) generation")
    assert "Announce Type" not in first.abstract
    assert first.abs_url == "https://arxiv.org/abs/2407.01000" and first.pdf_url == "https://arxiv.org/pdf/2407.01000"
    assert first.published_at == datetime(2024, 6, 10, 4, tzinfo=timezone.utc)
    assert first.categories and first.guid == "oai:arXiv.org:2407.01000v1"


def test_arxiv_listing_decodes_tex_accents_in_the_comma_joined_creator():
    second = parse_listing(fixture("arxiv_rss.xml")).entries[1]
    assert second.authors == ["André Martins", "Lucas Ferreira", "Tomáš Král", "Mateo Rossi", "Priya Raman"]


def test_arxiv_atom_listing_reads_like_the_rss_one():
    rss = parse_listing(fixture("arxiv_rss.xml")).entries[:3]
    atom = parse_listing(fixture("arxiv_atom.xml")).entries[:3]
    assert [(e.key, e.title, e.abstract, e.authors, e.announce_type) for e in atom] == [
        (e.key, e.title, e.abstract, e.authors, e.announce_type) for e in rss
    ]


def test_empty_weekend_listing_is_empty_not_an_error():
    listing = parse_listing(fixture("arxiv_rss_empty.xml"))
    assert listing.entries == [] and listing.invalid == [] and listing.problem is None


def test_feed_error_for_query_is_an_error():
    with pytest.raises(FeedError, match="Feed error for query: cs.XX"):
        parse_listing(fixture("arxiv_feed_error.xml"))


def test_arxiv_api_page_gives_entries_versions_pdf_links_and_the_total():
    listing, total = parse_api_page(fixture("arxiv_api_page1.xml"))
    assert total == 6 and len(listing.entries) == 3
    entry = listing.entries[0]
    assert entry.key == f"arxiv:{entry.arxiv_id}" and entry.version == 1
    assert entry.pdf_url == f"http://arxiv.org/pdf/{entry.arxiv_id}v1"
    assert entry.published_at and entry.updated_at and entry.authors and entry.categories
    assert entry.announce_type is None


def test_arxiv_api_error_entry_is_an_error():
    with pytest.raises(FeedError, match="arXiv API error: incorrect id format for 2407.0xyz"):
        parse_api_page(fixture("arxiv_api_error.xml"))


def test_hf_daily_papers_carry_their_signals_and_arxiv_keys():
    listing = parse_daily(fixture("hf_daily.json"))
    assert len(listing.entries) == 4 and listing.invalid == []
    first = listing.entries[0]
    assert first.key == "arxiv:2407.01002" and first.version is None
    assert first.upvotes is not None and first.num_comments is not None and first.keywords
    assert first.github_repo == first.code_url == "https://github.com/example/repo" and first.github_stars == 57
    assert first.thumbnail_url.endswith("2407.01002.png")
    assert first.published_at == datetime(2024, 6, 11, 4, tzinfo=timezone.utc)
    assert "María García" in first.authors


def test_hf_daily_tolerates_unknown_odd_and_missing_fields():
    listing = parse_daily(fixture("hf_daily_odd.json"))
    minimal, odd = listing.entries
    assert minimal.title == "Minimal Item With Only Required Fields" and minimal.upvotes is None
    assert odd.authors == ["Zoë Laurent"] and odd.upvotes is None and odd.keywords == []
    assert odd.num_comments == 4 and odd.thumbnail_url is None and odd.published_at is None
    assert len(listing.invalid) == 3 and "no title" in listing.invalid[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"error": "Invalid date"}', "Hugging Face says: Invalid date"),
        (b'{"papers": []}', "expected a JSON list"),
        (b'[{"paper": {"id": "1"', "invalid JSON at line 1"),
        (b"<!DOCTYPE html><html><body>Oops</body></html>", "HTML page"),
        (b'[{"paper": {"title": "Caf\xe9"}}]', "invalid UTF-8 at byte 25"),
    ],
)
def test_hf_daily_bad_responses_say_why(content, message):
    with pytest.raises(FeedError, match=message):
        parse_daily(content)


def test_generic_feed_entries_are_sanitised_and_keyed_by_normalised_link():
    listing = parse_feed(fixture("blog_atom.xml"))
    experts, arxiv_post, notes = listing.entries
    assert experts.title == "Scaling Sparse Experts"
    assert experts.abstract == "We train mixture-of-experts models & report what breaks."
    assert experts.key == "url:lab.example.org/posts/scaling-experts" and experts.authors == ["Dana Scully"]
    assert arxiv_post.key == "arxiv:2407.01000" and arxiv_post.abstract == "A summary of our arXiv paper."
    assert notes.key == "url:lab.example.org/posts/evaluation"


def test_entries_without_title_or_abstract_are_counted_and_the_rest_kept_clean():
    listing = parse_listing(fixture("missing_fields.xml"))
    assert listing.invalid == ["entry 1: no title", "entry 2: 'A Paper Without an Abstract' has no abstract"]
    (entry,) = listing.entries
    assert entry.title == "A Complete Paper About Sparse Attention"
    assert entry.abstract == "We study sparse attention & show it works."
    assert entry.authors == ["Ann Onymous", "Bob Builder"]


@pytest.mark.parametrize("name", ["entity_bomb.xml", "external_entity.xml"])
def test_entity_declarations_are_refused_before_parsing(name):
    tracemalloc.start()
    with pytest.raises(FeedError, match="declares XML entities"):
        parse_listing(fixture(name))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20_000_000


def test_truncated_feed_keeps_the_complete_entries_and_reports_the_problem():
    listing = parse_listing(fixture("truncated.xml"))
    assert "malformed XML" in listing.problem
    assert [e.key for e in listing.entries] == ["arxiv:2407.01000", "arxiv:2407.01001"]
    assert len(listing.invalid) == 1


def test_invalid_utf8_is_reported_with_its_position():
    listing = parse_listing(fixture("invalid_utf8.xml"))
    assert listing.problem.startswith("invalid UTF-8 at byte ")
    assert len(listing.entries) == 6


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (fixture("not_a_feed.html"), "not a feed: the response is an HTML page"),
        (b"   ", "the response is empty"),
        (b"just some words", "not a feed"),
    ],
)
def test_things_that_are_not_feeds_say_so(content, message):
    with pytest.raises(FeedError, match=message):
        parse_feed(content)


@pytest.mark.parametrize(
    ("tex", "text"),
    [
        ("Andr\\'e", "André"),
        ('J{\\"o}rg M\\"uller', "Jörg Müller"),
        ("Fran\\c{c}ois", "François"),
        ("Ji\\v{r}\\'i Nov\\'ak", "Jiří Novák"),
        ("S{\\o}ren", "Søren"),
        ("Andr\\'{e}", "André"),
        ("Plain Name", "Plain Name"),
    ],
)
def test_tex_accents_are_decoded(tex, text):
    assert decode_tex(tex) == text


def test_authors_split_on_commas_and_clean_html():
    assert split_authors("A. Smith, <b>B. Jones</b> ,  , C.\\'E. Doe") == ["A. Smith", "B. Jones", "C.É. Doe"]


def test_clean_text_strips_tags_scripts_and_entities():
    assert clean_text("<p>Deep &amp; <i>wide</i>\n\n nets<script>x()</script></p>") == "Deep & wide nets"
    assert clean_text("a < b and c > d") == "a < b and c > d"


def test_titles_normalise_across_case_punctuation_and_accents():
    assert normalise_title("Scaling Sparse Experts!") == normalise_title("scaling  sparse-experts") == "scaling sparse experts"
    assert normalise_title("Café") == "cafe"


def test_very_long_links_get_a_hashed_key_that_fits_the_column():
    from digest.sources.feed import entry_key

    key = entry_key("https://example.org/" + "a" * 600, None, "Long")
    assert key.startswith("url:sha256:") and len(key) < 512
    assert key == entry_key("https://example.org/" + "a" * 600 + "/", None, "Long")


def test_links_normalise_without_scheme_www_tracking_or_trailing_slash():
    assert normalise_url("https://www.Example.org/a/?utm_source=x&id=3#frag") == "example.org/a?id=3"
    assert normalise_url("http://example.org/a") == "example.org/a"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oai:arXiv.org:2406.01234v2", ("2406.01234", 2)),
        ("https://arxiv.org/abs/2406.01234", ("2406.01234", None)),
        ("http://arxiv.org/abs/hep-th/9901001v3", ("hep-th/9901001", 3)),
        ("no id here", (None, None)),
    ],
)
def test_arxiv_ids_and_versions(text, expected):
    assert parse_arxiv_id(text) == expected


def entry(**fields) -> PaperEntry:
    return PaperEntry(key="arxiv:1", title="Sparse attention", abstract="Fast transformers.", **fields)


def source(**fields) -> SourceSettings:
    return SourceSettings(name="s", kind="arxiv-rss", url="x.xml", **fields)


def test_filters_keep_categories_announce_types_and_keywords():
    assert keep_entry(entry(categories=["cs.CL"]), source(categories=["cs.CL", "cs.CV"]))
    assert not keep_entry(entry(categories=["math.AG"]), source(categories=["cs.CL"]))
    assert not keep_entry(entry(announce_type="replace"), source(announce_types=["new", "cross"]))
    assert keep_entry(entry(announce_type=None), source(announce_types=["new"]))
    assert keep_entry(entry(), source(include=["TRANSFORMERS"]))
    assert not keep_entry(entry(), source(include=["diffusion"]))
    assert not keep_entry(entry(), source(exclude=["sparse"]))
