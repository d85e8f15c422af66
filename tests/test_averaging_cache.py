"""The numba cache lives where configure_cache puts it (the state dir), never beside the source,
and a second process loads the kernels from it instead of compiling them again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import edge_agent.averaging
from edge_agent.averaging import aggregate, configure_cache
from edge_agent.averaging.cache import kernels

SOURCE = Path(edge_agent.averaging.__file__).parent

PROBE = """
import json, sys
if sys.argv[2] == "numba-first":
    import numba  # someone imported numba before the cache was configured
from edge_agent.averaging import aggregate, configure_cache
configure_cache(sys.argv[1])
aggregate([1.0, 2.0], [1.0, 2.0], [0, 0], width_s=60, period_s=1.0)
from edge_agent.averaging.cache import kernels
s = kernels().window_stats.stats
print(json.dumps({"hits": sum(s.cache_hits.values()), "misses": sum(s.cache_misses.values()),
                  "path": s.cache_path}))
"""


def probe(state_dir: Path, mode: str = "plain") -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(state_dir), mode], check=True,
                         capture_output=True, text=True, timeout=240)  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_cache_files_go_to_the_state_dir_not_the_source(numba_cache_dir: Path) -> None:
    aggregate([1.0], [1.0], [0], width_s=60, period_s=1.0)
    assert kernels().window_stats.stats.cache_path.startswith(str(numba_cache_dir))
    assert list(numba_cache_dir.rglob("*.nbi")), "no numba index in the state dir"
    assert not list(SOURCE.rglob("*.nbi")) and not list(SOURCE.rglob("*.nbc"))


def test_reconfiguring_after_load_is_refused(numba_cache_dir: Path, tmp_path: Path) -> None:
    aggregate([1.0], [1.0], [0], width_s=60, period_s=1.0)
    assert configure_cache(numba_cache_dir.parent) == numba_cache_dir  # same place: fine
    with pytest.raises(RuntimeError, match="already loaded"):
        configure_cache(tmp_path)


def test_second_process_loads_from_the_cache(tmp_path: Path) -> None:
    cold = probe(tmp_path)
    assert (cold["hits"], cold["misses"]) == (0, 1)
    assert str(cold["path"]).startswith(str(tmp_path / "numba-cache"))
    warm = probe(tmp_path)
    assert (warm["hits"], warm["misses"]) == (1, 0)


def test_configure_cache_works_when_numba_was_imported_first(tmp_path: Path) -> None:
    result = probe(tmp_path, "numba-first")
    assert str(result["path"]).startswith(str(tmp_path / "numba-cache"))
