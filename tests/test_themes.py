"""Theme assignment and ranking: keywords, embedding similarity, exclusions, categories, the Other bucket, and no
database lock held while papers are embedded."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from conftest import CORPUS
from digest import pipeline, themes
from digest.config import load_config
from digest.models import Embedding, Paper, ThemeAssignment
from digest.store import session_scope
from digest.store import themes as store_themes
from digest.themes import assign_themes, matched_keywords, rank_theme

THEMES = """
[summariser]
backend = "extractive"

[[themes]]
name = "Image generation"
description = "Diffusion and other generative models that create or edit images and video."
keywords = ["diffusion", "text-to-image", "image editing", "ControlNet"]
exclude = ["audio", "music"]

[[themes]]
name = "LLM reasoning"
description = "Large language models that reason step by step, chain-of-thought prompting and decoding."
keywords = ["chain-of-thought", "LLM", "reasoning"]

[[themes]]
name = "Agents"
description = "Agents that make decisions and act in interactive environments, trained with language models."
"""

IMAGE_PAPERS = [
    "SEINE: Short-to-Long Video Diffusion Model for Generative Transition and Prediction",
    "Zero-shot spatial layout conditioning for text-to-image diffusion models",
    "InteractDiffusion: Interaction Control in Text-to-Image Diffusion Models",
    "eDiff-I: Text-to-Image Diffusion Models with an Ensemble of Expert Denoisers",
]
REASONING_PAPER = "Expediting and Elevating Large Language Model Reasoning via Hidden Chain-of-Thought Decoding"
AGENT_PAPER = "Pre-Trained Language Models for Interactive Decision-Making"
AUDIO_PAPER = "Tango 2: Aligning Diffusion-based Text-to-Audio Generations through Direct Preference Optimization"


def corpus_rows(titles: list[str]) -> list[dict]:
    rows = {row["title"]: row for row in map(json.loads, CORPUS.read_text(encoding="utf-8").splitlines())}
    return [rows[title] for title in titles]


def add_papers(engine, rows: list[dict], **fields) -> list[Paper]:
    with session_scope(engine) as session:
        papers = [
            Paper(key=f"test:{row['title']}", title=row["title"], title_norm=row["title"].lower(), abstract=row["abstract"], **fields)
            for i, row in enumerate(rows)
        ]
        session.add_all(papers)
    return papers


@pytest.fixture
def themed(write_config, engine):
    return load_config(write_config(THEMES))


def themes_by_title(engine) -> dict[str, list[str]]:
    with session_scope(engine) as session:
        rows = session.execute(select(Paper.title, ThemeAssignment.theme).join(ThemeAssignment)).all()
    found: dict[str, list[str]] = {}
    for title, theme in rows:
        found.setdefault(title, []).append(theme)
    return found


def test_keywords_match_whole_words_phrases_plurals_and_acronyms():
    text = "We train LLMs with chain of thought prompts for text-to-image diffusion and image-editing tasks."
    assert matched_keywords(["LLM", "chain-of-thought", "text to image", "image editing", "diffusion"], text) == [
        "LLM", "chain-of-thought", "text to image", "image editing", "diffusion",
    ]
    assert matched_keywords(["agent", "LLM", "RAG"], "An agentic system for allm fragments and rag dolls.") == []
    assert matched_keywords(["ControlNet"], "we extend controlnet-style adapters") == []


def test_real_abstracts_land_in_the_themes_whose_answer_is_clear(themed, engine):
    titles = [*IMAGE_PAPERS, REASONING_PAPER, AGENT_PAPER, AUDIO_PAPER]
    add_papers(engine, corpus_rows(titles))
    pipeline.assign_and_summarise(themed, engine)
    found = themes_by_title(engine)
    for title in IMAGE_PAPERS:
        assert "Image generation" in found[title], title
        assert "LLM reasoning" not in found[title] and "Agents" not in found[title], title
    assert "LLM reasoning" in found[REASONING_PAPER] and "Image generation" not in found[REASONING_PAPER]
    assert "Agents" in found[AGENT_PAPER]
    assert "Image generation" not in found[AUDIO_PAPER]  # `exclude = ["audio", ...]` keeps it out


def test_assignment_keeps_score_and_readable_reason(themed, engine):
    add_papers(engine, corpus_rows([IMAGE_PAPERS[2]]))
    pipeline.assign_and_summarise(themed, engine)
    with session_scope(engine) as session:
        [assignment] = [a for a in store_themes.assignments_for(session, [1])[1] if a.theme == "Image generation"]
    assert assignment.matched_keywords == ["diffusion", "text-to-image"]
    assert assignment.reason.startswith("matched keywords: diffusion, text-to-image; similarity 0.")
    assert assignment.score > assignment.similarity > 0


def test_papers_fitting_no_theme_go_to_other_unless_it_is_turned_off(write_config, engine):
    config = load_config(write_config(THEMES.split("[[themes]]")[0] + '[[themes]]\nname = "Robotics"\n'
                                      'description = "Robot arms grasping objects."\nkeywords = ["robot"]\n'))
    add_papers(engine, corpus_rows([REASONING_PAPER]))
    pipeline.assign_and_summarise(config, engine)
    with session_scope(engine) as session:
        [assignment] = store_themes.assignments_for(session, [1])[1]
    assert assignment.theme == "Other" and assignment.reason.startswith("fits no theme (closest: Robotics")

    no_other = load_config(write_config(THEMES.split("[[themes]]")[0] + "[assign]\nother_bucket = false\n"
                                        '[[themes]]\nname = "Robotics"\nkeywords = ["robot"]\n'))
    with session_scope(engine) as session:
        papers = session.scalars(select(Paper)).all()
    assert assign_themes(no_other, engine, papers) == {1: []}
    with session_scope(engine) as session:
        assert store_themes.assignments_for(session, [1]) == {}


def test_without_similarity_themes_go_by_keywords_alone_and_no_model_runs(write_config, engine):
    config = load_config(write_config(THEMES + "\n[assign]\nsimilarity = false\n"))
    add_papers(engine, corpus_rows([IMAGE_PAPERS[2], AGENT_PAPER]))
    pipeline.assign_and_summarise(config, engine)
    with session_scope(engine) as session:
        assignments = store_themes.assignments_for(session, [1, 2])
        assert session.scalar(select(func.count()).select_from(Embedding)) == 0
    [image] = assignments[1]
    assert (image.theme, image.reason, image.similarity) == (
        "Image generation", "matched keywords: diffusion, text-to-image", None
    )
    assert image.score == pytest.approx(0.5 * 0.75)
    # No keyword of "Agents" (it has none) appears, and similarity cannot place it: it goes to Other.
    assert [(a.theme, a.reason) for a in assignments[2]] == [("Other", "fits no theme")]


def test_categories_restrict_a_theme(write_config, engine):
    config = load_config(write_config(THEMES.replace('exclude = ["audio", "music"]', 'categories = ["cs.CV"]')))
    add_papers(engine, corpus_rows(IMAGE_PAPERS[:1]), categories=["cs.CL"])
    add_papers(engine, [{"title": "Diffusion for images", "abstract": "A diffusion model."}], categories=["cs.CV"])
    pipeline.assign_and_summarise(config, engine)
    found = themes_by_title(engine)
    assert "Image generation" not in found[IMAGE_PAPERS[0]]
    assert "Image generation" in found["Diffusion for images"]


def test_embeddings_are_stored_once_and_redone_when_the_text_changes(themed, engine):
    add_papers(engine, corpus_rows(IMAGE_PAPERS[:2]))
    pipeline.assign_and_summarise(themed, engine)
    with session_scope(engine) as session:
        before = {e.paper_id: (e.text_hash, e.vector) for e in session.scalars(select(Embedding))}
        session.get(Paper, 1).abstract += " We also release code."
    changed = load_config(themed.path)  # same themes: only the edited paper is looked at again
    with session_scope(engine) as session:
        papers = session.scalars(select(Paper)).all()
    assign_themes(changed, engine, papers)
    with session_scope(engine) as session:
        after = {e.paper_id: (e.text_hash, e.vector) for e in session.scalars(select(Embedding))}
        assert session.scalar(select(func.count()).select_from(Embedding)) == 2
    assert after[2] == before[2] and after[1][0] != before[1][0] and len(after[1][1]) == 384 * 4


def test_changing_the_themes_reassigns_papers(write_config, themed, engine):
    add_papers(engine, corpus_rows([REASONING_PAPER]))
    pipeline.assign_and_summarise(themed, engine)
    renamed = load_config(write_config(THEMES.replace('name = "LLM reasoning"', 'name = "Reasoning"')))
    pipeline.assign_and_summarise(renamed, engine)
    assert "Reasoning" in themes_by_title(engine)[REASONING_PAPER]
    assert "LLM reasoning" not in themes_by_title(engine)[REASONING_PAPER]


def test_ranking_mixes_relevance_popularity_and_recency_and_explains_itself(themed):
    now = datetime(2026, 1, 10, tzinfo=timezone.utc)

    def candidate(pid, score, upvotes=None, stars=None, age_days=0.0):
        paper = Paper(id=pid, key=f"k{pid}", title=f"P{pid}", title_norm="", upvotes=upvotes, github_stars=stars,
                      first_seen_at=now - timedelta(days=age_days))
        return paper, ThemeAssignment(paper_id=pid, theme="Image generation", score=score, reason=f"similarity {score}")

    ranked = rank_theme(themed, "Image generation", [
        candidate(1, 0.5),
        candidate(2, 0.5, upvotes=300, stars=1200),
        candidate(3, 0.5, age_days=30),
        candidate(4, 0.9, age_days=30),
        (Paper(id=5, key="k5", title="P5", title_norm="", first_seen_at=now), ThemeAssignment(paper_id=5, theme="Agents", score=2.0, reason="")),
    ], now)
    assert [r.paper.id for r in ranked] == [2, 4, 1, 3]
    assert ranked[0].reason == "similarity 0.5; 300 upvotes; 1200 GitHub stars"

    popular_only = themed.model_copy(update={"ranking": themed.ranking.model_copy(update={"relevance": 0, "recency": 0})})
    assert rank_theme(popular_only, "Image generation", [candidate(1, 0.9), candidate(2, 0.1, upvotes=5)], now)[0].paper.id == 2


def test_themes_command_lists_counts_and_top_papers(themed, engine):
    from typer.testing import CliRunner

    from digest.cli import app

    add_papers(engine, corpus_rows(IMAGE_PAPERS[:3] + [REASONING_PAPER]))
    pipeline.assign_and_summarise(themed, engine)
    result = CliRunner().invoke(app, ["themes", "--json", "--top", "2"])
    assert result.exit_code == 0, result.output
    listing = [json.loads(line) for line in result.stdout.splitlines()]
    assert [entry["theme"] for entry in listing] == ["Image generation", "LLM reasoning", "Agents", "Other"]
    image = listing[0]
    assert image["papers"] == 3 and len(image["top"]) == 2
    assert image["top"][0]["tldr"] and image["top"][0]["reason"].startswith("matched keywords:")


def test_papers_json_shows_themes_with_reasons_and_the_tldr(themed, engine):
    from typer.testing import CliRunner

    from digest.cli import app

    add_papers(engine, corpus_rows([REASONING_PAPER]))
    pipeline.assign_and_summarise(themed, engine)
    result = CliRunner().invoke(app, ["papers", "--json"])
    assert result.exit_code == 0, result.output
    [paper] = [json.loads(line) for line in result.stdout.splitlines()]
    assert paper["themes"][0]["name"] == "LLM reasoning"
    assert paper["themes"][0]["reason"].startswith("matched keywords: chain-of-thought")
    assert paper["tldr"] and len(paper["tldr"].split()) <= 30


def write_lock_is_free(database: str) -> bool:
    """Whether another connection could start a write transaction on the SQLite file right now, without waiting."""
    connection = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()


def test_papers_are_embedded_outside_any_database_transaction(themed, engine, monkeypatch):
    """While the model embeds (papers, then themes), sign-ups, ingest and sends can still write."""
    add_papers(engine, corpus_rows(IMAGE_PAPERS[:2]))
    embed, free_while_embedding = themes.embed, []

    def embed_and_check_the_lock(texts: list[str]):
        free_while_embedding.append(write_lock_is_free(engine.url.database))
        return embed(texts)

    monkeypatch.setattr(themes, "embed", embed_and_check_the_lock)
    pipeline.assign_and_summarise(themed, engine)

    assert free_while_embedding == [True, True]
    assert set(themes_by_title(engine)[IMAGE_PAPERS[0]]) == {"Image generation"}
