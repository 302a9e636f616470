"""DuckDB projections of the easysched log: tables, views, the projector, the query service.

    from projections import Projector, ProjectionService, connect

The names are imported on first use, so importing `projections.cli` (which the main CLI does
at start) does not load DuckDB or Arrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from projections.api import Connection, connect
    from projections.projector import Projector
    from projections.service import ProjectionService

__all__ = ["Connection", "ProjectionService", "Projector", "connect"]

_LAZY = {
    "Connection": "projections.api",
    "connect": "projections.api",
    "Projector": "projections.projector",
    "ProjectionService": "projections.service",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'projections' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
