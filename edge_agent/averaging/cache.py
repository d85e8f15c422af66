"""Where numba keeps compiled kernels, and the lazy import of the kernel module.

Numba reads ``NUMBA_CACHE_DIR`` when it is first imported, and a ``cache=True`` function picks
its cache location when it is decorated. So the cache directory must be set before the kernel
module is imported: ``configure_cache(state_dir)`` does that, and ``kernels()`` imports the
kernel module only on first use. The cache lives in the agent's state directory because the
source tree may be read-only (a Debian package) and because a cache beside the source is shared
by every user of the installation.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

log = logging.getLogger("quantrac.averaging.cache")

_KERNELS = "edge_agent.averaging.kernels"
_SUBDIR = "numba-cache"


def configure_cache(state_dir: str | os.PathLike[str]) -> Path:
    """Put numba's cache in ``state_dir/numba-cache``; call before the first aggregation.

    Raises ``RuntimeError`` if the kernels were already loaded with a different cache: their
    location is fixed at that point, and silently caching elsewhere would hide the mistake.
    """
    cache_dir = Path(state_dir) / _SUBDIR
    cache_dir.mkdir(parents=True, exist_ok=True)
    if _KERNELS in sys.modules:
        current = os.environ.get("NUMBA_CACHE_DIR")
        if current is not None and Path(current) == cache_dir:
            return cache_dir
        raise RuntimeError(
            f"numba kernels already loaded with NUMBA_CACHE_DIR={current!r}; "
            f"configure_cache({str(state_dir)!r}) must run before the first aggregation"
        )
    os.environ["NUMBA_CACHE_DIR"] = str(cache_dir)
    if "numba" in sys.modules:  # imported by someone else: make it re-read the environment
        from numba.core import config

        config.reload_config()  # type: ignore[no-untyped-call]
    return cache_dir


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "quantrac-edge"


def kernels() -> ModuleType:
    """The compiled kernel module, imported on first use (numba is heavy to import)."""
    module = sys.modules.get(_KERNELS)
    if module is not None:
        return module
    if "NUMBA_CACHE_DIR" not in os.environ:
        fallback = configure_cache(_default_cache_dir())
        log.info("averaging_cache_default", extra={"cache_dir": str(fallback)})
    return importlib.import_module(_KERNELS)
