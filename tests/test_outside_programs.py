"""Every outside program the tests, benchmarks and the demo start is installed by our own files.

A green run on a developer's machine once hid a missing install step: a test ran
`mosquitto_pub` (Debian's `mosquitto-clients`), which the developer had installed by hand and a
fresh machine did not have. The Makefile's `deb` target (which `.ci/run` runs) installs from
one list, the Makefile's ``DEB_PROGRAMS`` (``program=package`` words); this test reads `tests/`,
`bench/` and the demo, finds every program they start (the first word of a `subprocess` argv
literal, a `shutil.which("...")` look-up, a module-level constant used as either), and fails when
one is neither in that list nor a script of this virtualenv (installed from `pyproject.toml`).
"""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = ROOT / "Makefile"
SCANNED = [ROOT / "tests", ROOT / "bench", ROOT / "examples" / "demo.py", ROOT / "hw_sim"]
SPAWNERS = {"run", "Popen", "check_output", "check_call", "call", "create_subprocess_exec",
            "execvp", "execv"}


def listed_programs() -> dict[str, str]:
    """Program -> Debian package, from the Makefile's ``DEB_PROGRAMS`` (continued lines too)."""
    text = MAKEFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    [line] = [ln for ln in text.splitlines() if ln.startswith("DEB_PROGRAMS :=")]
    out: dict[str, str] = {}
    for word in line.split(":=", 1)[1].split():
        prog, sep, pkg = word.partition("=")
        assert sep and prog and pkg, f"{MAKEFILE}: DEB_PROGRAMS: {word!r}: expected program=package"
        out[prog] = pkg
    return out


def _first_word(node: ast.expr, consts: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return consts.get(node.id)
    return None


def programs_started(source: str) -> set[str]:
    """Names of the programs a module's code starts (by its literal argv's first word)."""
    tree = ast.parse(source)
    consts: dict[str, str] = {}
    for stmt in tree.body:
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
                and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)):
            consts[stmt.targets[0].id] = stmt.value.value
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = node.args[0]
        word: str | None = None
        if name == "which":
            word = _first_word(first, consts)
        elif name in SPAWNERS:
            if isinstance(first, ast.List | ast.Tuple) and first.elts:
                word = _first_word(first.elts[0], consts)
            elif name in {"create_subprocess_exec", "execvp", "execv"}:
                word = _first_word(first, consts)
        if word:
            found.add(Path(word).name)
    return found


def _sources() -> list[Path]:
    files: list[Path] = []
    for p in SCANNED:
        files.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return files


def test_the_scanner_sees_programs_started_in_each_way() -> None:
    src = (
        "import shutil, subprocess, asyncio\n"
        "PUB = 'prog-two'\n"
        "subprocess.run(['prog-one', '-b', '9600'])\n"
        "subprocess.Popen((PUB, '-t', 'x'))\n"
        "shutil.which('prog-three')\n"
        "asyncio.create_subprocess_exec('/usr/sbin/prog-four', '-D')\n"
        "subprocess.run([sys.executable, '-m', 'x'])\n"
    )
    assert programs_started(src) == {"prog-one", "prog-two", "prog-three", "prog-four"}


def test_every_program_a_test_bench_or_demo_starts_is_installed_by_the_project() -> None:
    listed = listed_programs()
    venv_bin = Path(sys.prefix) / "bin"
    unlisted: dict[str, list[str]] = {}
    for path in _sources():
        for prog in programs_started(path.read_text(encoding="utf-8")):
            if prog in listed or (venv_bin / prog).exists():
                continue
            unlisted.setdefault(prog, []).append(str(path.relative_to(ROOT)))
    assert not unlisted, (
        f"programs started but not in the Makefile's DEB_PROGRAMS "
        f"(add program=debian-package): {unlisted}")


def test_every_listed_program_is_on_path() -> None:
    """`make setup` ran `make deb`, so each listed program must now be found (PostgreSQL's
    server programs where Debian puts them, off PATH, as `make deb` looks for them)."""
    pg_bin = Path("/usr/lib/postgresql")
    missing = {p: pkg for p, pkg in listed_programs().items()
               if shutil.which(p) is None and not any(pg_bin.glob(f"*/bin/{p}"))}
    assert not missing, f"listed but not installed (make deb): {missing}"
