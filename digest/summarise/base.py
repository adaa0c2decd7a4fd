"""The summariser interface: a backend turns `Task`s into texts, and backends are found by name.

Built-in backends are `transformers` (a local model), `openai` (an OpenAI-compatible server) and `extractive`
(no model). They and any other package's are declared in the `digest.summarisers` entry-point group
(see `digest.plugins`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from digest.config import Config, SummariserSettings
from digest.errors import SummariserError
from digest.plugins import Registry

TaskKind = Literal["tldr", "overview"]


@dataclass(frozen=True)
class SourceItem:
    """One paper a theme overview draws on: its id, title and text (its TL;DR or abstract), the theme's keywords
    it matched, and its popularity signals where its source gives them."""

    paper_id: int
    title: str
    text: str
    keywords: tuple[str, ...] = ()
    upvotes: int | None = None
    comments: int | None = None
    stars: int | None = None


@dataclass(frozen=True)
class Task:
    """What to summarise. `source` is the cleaned text the summary must stay within (for an overview: the
    titles and texts of `items`); `title` is the paper's title or the theme's name."""

    kind: TaskKind
    title: str
    source: str
    max_words: int
    items: tuple[SourceItem, ...] = ()


DEFAULT_BATCH_SIZE = 16


class Summariser(ABC):
    """A backend. Subclasses implement `summarise` and are declared in the `digest.summarisers` entry-point
    group; `strict` asks for the cautious prompt used when a first answer failed the grounding check."""

    def __init__(self, settings: SummariserSettings, config: Config):
        self.settings = settings
        self.config = config

    @abstractmethod
    def summarise(self, tasks: list[Task], strict: bool = False) -> list[str]:
        """One text per task, in order. Raise SummariserError when the backend cannot answer at all."""

    @property
    def batch_size(self) -> int:
        """Texts generated together: `[summariser] batch_size`, else this backend's default."""
        return self.settings.batch_size or DEFAULT_BATCH_SIZE

    @property
    def tasks_per_commit(self) -> int:
        """How many papers are summarised between commits: a few batches, so a run keeps the model busy and an
        interrupted run loses little."""
        return self.batch_size * 4


SUMMARISERS: Registry[Summariser] = Registry("digest.summarisers")


def backend_class(name: str) -> type[Summariser]:
    """The backend `[summariser] backend` names."""
    backend = SUMMARISERS.get(name)
    if backend is None:
        known = ", ".join(SUMMARISERS.names())
        raise SummariserError(f"unknown summariser backend {name!r} in [summariser] backend (known: {known})")
    return backend
