"""The `easysched` command line (`easysched_es.cli.app`); `main` is the console script."""

from easysched_es.cli.app import main

__all__ = ["main"]
