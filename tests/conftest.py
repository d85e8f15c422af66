"""Session-wide test setup shared by every package. Keep it minimal."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def numba_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compiled numba kernels go to a temporary state directory, never beside the source."""
    from edge_agent.averaging import configure_cache

    return configure_cache(tmp_path_factory.mktemp("state"))
