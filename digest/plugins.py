"""Backends found by name through entry points: summarisers (group `digest.summarisers`) and mail transports
(group `digest.transports`). digest declares its own in pyproject.toml like any other package would, so a
package adds a backend by declaring an entry point in one of these groups, e.g.

    [project.entry-points."digest.transports"]
    ses = "my_package.transport:SesTransport"
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Generic, TypeVar

Backend = TypeVar("Backend")


class Registry(Generic[Backend]):
    """The classes of one entry-point group by name, each imported when first asked for."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.loaded: dict[str, type[Backend]] = {}

    def names(self) -> list[str]:
        """Every name an installed package declares in the group."""
        return sorted({entry.name for entry in entry_points(group=self.group)})

    def get(self, name: str) -> type[Backend] | None:
        """The class declared as `name` (imported now if it was not yet), or None when no package declares it."""
        if name not in self.loaded:
            for entry in entry_points(group=self.group, name=name):
                self.loaded[name] = entry.load()
                break
        return self.loaded.get(name)
