"""How specific a TL;DR is: whether it singles out its own paper among the papers summarised with it.

A TL;DR can be grounded (nothing in it that its abstract does not say) and still vague: "A model that outperforms
comparable models on both language and image generation" would do for half a day's papers. Measured with the
embedding model that assigns themes: a TL;DR is specific when its embedding is closer to its own paper's
(title and abstract) than to any other paper's in the run, leaving out papers that are near copies of its own
(no TL;DR can tell those apart). A vague one gives way to the abstract's most
informative sentence (the extractive TL;DR) when that is more specific, and an answer that failed its checks
gives way to that sentence, without a second generation, when the sentence picks out its paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from digest.config import Config
from digest.models import Paper
from digest.resources import missing_packages
from digest.store import session_scope
from digest.store import themes as store_themes
from digest.themes import EMBEDDING_MODEL, EMBEDDING_MODULES, embed, paper_embeddings

if TYPE_CHECKING:
    import numpy as np

# Papers whose embeddings are at least this similar are near copies of each other (the same abstract under two
# titles, say): a TL;DR is not expected to tell them apart.
NEAR_COPY = 0.95


@dataclass
class Specificity:
    """The run's papers' embeddings, one row per paper."""

    row: dict[int, int]
    papers: np.ndarray

    def margins(self, answers: list[tuple[int, str]]) -> list[float]:
        """For each (paper id, TL;DR): its similarity to its own paper minus its highest similarity to another
        that is not a near copy of its own. Positive when the TL;DR picks out its own paper."""
        import numpy as np

        if not answers:
            return []
        scores = embed([text for _, text in answers]) @ self.papers.T
        margins = []
        for k, (paper_id, _) in enumerate(answers):
            own = self.row[paper_id]
            others = scores[k][self.papers @ self.papers[own] < NEAR_COPY]  # (its own paper is its own near copy)
            margins.append(float(scores[k, own] - others.max()) if others.size else 1.0)
        return margins


def run_specificity(config: Config, engine: Engine, papers: list[Paper]) -> Specificity | None:
    """The specificity measure over a run's `papers`, or None where it does not apply: `[summariser]
    prefer_specific` is off, the embedding model is not installed, or there is no other paper to tell apart from.
    Stored embeddings are reused; any missing (themes by keywords only) are computed, outside any transaction, and
    kept in memory only: several summarise workers start at once, and theme assignment owns storing them."""
    if not config.summariser.prefer_specific or len(papers) < 2 or missing_packages(EMBEDDING_MODULES):
        return None
    import numpy as np

    with session_scope(engine) as session:
        stored = store_themes.embeddings_for(session, [p.id for p in papers], EMBEDDING_MODEL)
    vectors, _ = paper_embeddings(papers, stored)
    ids = [p.id for p in papers]
    return Specificity({paper_id: i for i, paper_id in enumerate(ids)}, np.stack([vectors[i] for i in ids]))
