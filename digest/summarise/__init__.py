"""Summaries of papers (one-sentence TL;DRs) and themes (short overviews), by a pluggable backend, checked so
they invent nothing. See `core` for the flow, `base` for the backend interface, `grounding` for the check."""

from digest.summarise.base import SourceItem, Summariser, Task
from digest.summarise.core import (
    SummariseReport,
    current_overviews,
    get_summariser,
    overview_items,
    overview_task,
    summarise_papers,
    write_overview,
    write_overviews,
)

__all__ = [
    "SourceItem",
    "SummariseReport",
    "Summariser",
    "Task",
    "current_overviews",
    "get_summariser",
    "overview_items",
    "overview_task",
    "summarise_papers",
    "write_overview",
    "write_overviews",
]
