"""The log's CRC-32C, the C function of the `crc32c` package loaded without that package's `__init__`.

`import crc32c` also imports importlib.metadata and argparse and looks its own version up on
disk: tens of milliseconds on every CLI call (issue 11, `bench/cli.py`), for one C function.
If the extension cannot be found that way (another layout, another interpreter), the package
is imported as usual.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["crc32c"]


def _load() -> Callable[[bytes], int]:
    try:
        import importlib.machinery
        import importlib.util

        spec = importlib.util.find_spec("crc32c")  # finds the package without running it
        for directory in (spec.submodule_search_locations or []) if spec else []:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(directory, "_crc32c" + suffix)
                ext = importlib.util.spec_from_file_location("crc32c._crc32c", path) if os.path.exists(path) else None
                if ext is not None and ext.loader is not None:
                    module = importlib.util.module_from_spec(ext)
                    ext.loader.exec_module(module)
                    function: Callable[[bytes], int] = module.crc32c
                    return function
    except (ImportError, OSError, AttributeError):
        pass
    from crc32c import crc32c as packaged

    return packaged


crc32c = _load()
