"""The dependency arrows of docs/architecture.md are machine-checked, and the check bites.

``make lint`` runs import-linter with the contracts in pyproject.toml ([tool.importlinter]).
Each experiment here copies the packages to a temporary directory, adds one import that the
layout forbids, and shows that ``lint-imports`` fails there naming the contract; the real tree
passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))
PACKAGES = ("edge_agent", "drivers", "buffer", "provisioning", "protocol", "hw_sim", "centre")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first: the copy is what grimp finds, not the editable install of the tree
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_tree_keeps_every_contract() -> None:
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("edge_agent/core/pipeline.py", "import serial", "sans-IO cores"),
    ("edge_agent/config/model.py", "import edge_agent.poll.poller", "sans-IO cores"),
    ("edge_agent/core/pipeline.py", "import edge_agent.daemon.agent", "edge_agent's rooms"),
    ("edge_agent/daemon/agent.py", "import centre.store", "the packages: one-way arrows"),
    ("centre/store.py", "import edge_agent.core.pipeline", "the packages: one-way arrows"),
    ("edge_agent/stray.py", "import math", "edge_agent's rooms"),  # a module outside every room
    ("drivers/codec.py", "import drivers.decode", "no import cycle"),
])
def test_one_forbidden_import_fails_lint(tmp_path: Path, module: str, line: str,
                                         contract: str) -> None:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text((target.read_text() if target.exists() else "") + f"\n{line}\n")
    out = lint_imports(tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    broken = out.stdout[out.stdout.index("Broken contracts"):]
    assert contract in broken, broken


def _modules(package: str) -> set[str]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts)
            for p in (ROOT / package).glob("*.py") if p.name != "__init__.py"}


@pytest.mark.parametrize(("package", "edges"), [
    # the MQTT/TLS client factory (paho and ssl); the pages' HTTP server (sockets, threads)
    ("protocol", {"protocol.mqtt_client", "protocol.web_server"}),
    ("drivers", {"drivers.transport"}),  # pyserial and sockets
])
def test_every_module_is_checked_sans_io_or_named_an_edge(package: str, edges: set[str]) -> None:
    """The sans-IO contract lists these packages module by module (they hold edges too); a
    new module must be put on one list or the other, not silently left unchecked."""
    [sans_io] = [c for c in CONTRACTS["contracts"] if c["id"] == "sans-io"]
    listed = {m for m in sans_io["source_modules"] if m.startswith(package + ".")}
    assert _modules(package) - listed == edges
