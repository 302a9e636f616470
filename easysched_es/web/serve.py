"""Building the one HTTP service of a process: query API, dashboard and metrics on one port."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from easysched_es.log.base import Stream
from easysched_es.runtime.fold import LogSource
from easysched_es.web.actions import ui_token
from easysched_es.web.routes import WebOptions, web_routes
from projections.service import ProjectionService

DEFAULT_UI_PORT = 8642


@dataclass
class UiSettings:
    """The dashboard's command-line settings (`--ui-host`, `--ui-port`, `--no-ui`, `--read-only`).

    `port=None` means the default port, replaced by a free one if it is busy (so that several
    schedulers on one machine all start); an explicit port that is busy is an error.
    """

    host: str = "127.0.0.1"
    port: int | None = None
    enabled: bool = True
    read_only: bool = False


def dashboard_service(
    data_dir: Path,
    source: LogSource,
    client: Callable[[], Any],
    settings: UiSettings,
    *,
    logs_dir: Path | None = None,
    log_dirs: dict[str, Path] | None = None,
    events: Stream | None = None,
    commands: Stream | None = None,
) -> ProjectionService:
    """A ProjectionService whose server also carries the dashboard (unless disabled) and /metrics."""
    token = ui_token()
    options = WebOptions(source=source, client=client, token=token, read_only=settings.read_only,
                         logs_dir=logs_dir, log_dirs=log_dirs, pages=settings.enabled)
    if settings.enabled:
        port, fallback = (DEFAULT_UI_PORT, True) if settings.port is None else (settings.port, False)
    else:
        port, fallback = (0 if settings.port is None else settings.port), False
    info = {"token": token, "ui": settings.enabled, "read_only": settings.read_only}
    return ProjectionService(data_dir, port=port, host=settings.host, events=events, commands=commands,
                             routes=web_routes(options), info=info, port_fallback=fallback)


def announce(service: ProjectionService, settings: UiSettings) -> str:
    """The line `easysched run` prints about the dashboard."""
    if not settings.enabled:
        return f"query API at {service.url}/ (dashboard off: --no-ui)"
    mode = ", read-only" if settings.read_only else ""
    return f"dashboard at {service.url}/ (token in {service.data_dir / 'service.json'}{mode})"
