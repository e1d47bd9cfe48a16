"""Objects other packages register with recbench through Python entry points.

A researcher adds a model or a dataset by installing a package whose metadata names it under a
group (``recbench.models``, ``recbench.datasets``), without editing recbench: the same mechanism
pytest and flake8 use for their plugins. Discovery is explicit (a function call, no import side
effect) and a broken plugin fails with one line naming it, never with a traceback from deep
inside an import.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from recbench.errors import ConfigError


def discover(group: str) -> dict[str, Any]:
    """Each entry point of ``group``, loaded, by its name (names sorted, so order is stable)."""
    found: dict[str, Any] = {}
    for point in sorted(entry_points(group=group), key=lambda p: p.name):
        if point.name in found:
            raise ConfigError(
                f"two installed packages register {point.name!r} under {group}: uninstall one")
        try:
            found[point.name] = point.load()
        except Exception as exc:  # any import failure of foreign code is the plugin's fault
            raise ConfigError(
                f"plugin {point.name!r} ({point.value}, group {group}) failed to load: "
                f"{type(exc).__name__}: {exc}; fix or uninstall that package") from None
    return found
