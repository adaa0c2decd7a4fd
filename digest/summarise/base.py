"""The summariser interface: a backend turns `Task`s into texts, and backends are registered by name.

Built-in backends are `transformers` (a local model), `openai` (an OpenAI-compatible server) and `extractive`
(no model). Other packages can add theirs through the `digest.summarisers` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import ClassVar, Literal

from digest.config import Config, SummariserSettings
from digest.errors import SummariserError

TaskKind = Literal["tldr", "overview"]


@dataclass(frozen=True)
class SourceItem:
    """One paper a theme overview draws on: its id, title and text (its TL;DR or abstract)."""

    paper_id: int
    title: str
    text: str


@dataclass(frozen=True)
class Task:
    """What to summarise. `source` is the cleaned text the summary must stay within (for an overview: the
    titles and texts of `items`); `title` is the paper's title or the theme's name."""

    kind: TaskKind
    title: str
    source: str
    max_words: int
    items: tuple[SourceItem, ...] = ()


class Summariser(ABC):
    """A backend. Subclasses set `name` and implement `summarise`; `strict` asks for the cautious prompt
    used when a first answer failed the grounding check."""

    name: ClassVar[str]

    def __init__(self, settings: SummariserSettings, config: Config):
        self.settings = settings
        self.config = config

    @abstractmethod
    def summarise(self, tasks: list[Task], strict: bool = False) -> list[str]:
        """One text per task, in order. Raise SummariserError when the backend cannot answer at all."""


_REGISTRY: dict[str, type[Summariser]] = {}


def register(cls: type[Summariser]) -> type[Summariser]:
    """Class decorator: make a backend available under its `name`."""
    _REGISTRY[cls.name] = cls
    return cls


def backend_class(name: str) -> type[Summariser]:
    if name not in _REGISTRY:
        for entry in entry_points(group="digest.summarisers"):
            if entry.name == name:
                register(entry.load())
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise SummariserError(f"unknown summariser backend {name!r} in [summariser] backend (known: {known})")
    return _REGISTRY[name]
