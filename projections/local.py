"""The projection of a data directory opened in this process: streams, projector and reader."""

from __future__ import annotations

import time
from pathlib import Path

from easysched_es.log.base import Stream
from projections.errors import ProjectionLockedError
from projections.layout import db_path, open_streams
from projections.projector import Projector
from projections.queries import DEFAULT_TIMEOUT, LocalReader


class LocalProjection:
    """Opens the DuckDB file of `data_dir` for writing, with the streams it folds.

    Streams given by the caller stay the caller's; streams opened here (the embedded log of
    `data_dir`) are closed by `close`. `wait` retries for that long while another process
    holds the file (a scheduler starting or stopping, a CLI call finishing).
    """

    def __init__(
        self,
        data_dir: Path,
        events: Stream | None = None,
        commands: Stream | None = None,
        *,
        wait: float = 0.0,
        query_timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.data_dir = Path(data_dir)
        self._owned: list[Stream] = []
        if events is None:
            events, commands = open_streams(self.data_dir)
            self._owned = [s for s in (events, commands) if s is not None]
        self.events, self.commands = events, commands
        deadline = time.monotonic() + wait
        while True:
            try:
                self.projector = Projector(db_path(self.data_dir), events, commands)
                break
            except ProjectionLockedError:
                if time.monotonic() >= deadline:
                    self._close_streams()
                    raise
                time.sleep(0.05)  # polling a lock held by another process: nothing to wait on
            except BaseException:
                self._close_streams()
                raise
        self.reader = LocalReader(self.projector.cursor, self.projector.status, query_timeout)

    def close(self) -> None:
        """Close the projector and the streams opened here."""
        self.projector.close()
        self._close_streams()

    def _close_streams(self) -> None:
        for stream in self._owned:
            stream.close()
        self._owned = []

    def __enter__(self) -> LocalProjection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
