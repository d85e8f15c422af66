"""The node on the MicroPython unix port: ``micropython unix_main.py --port PTY ...``.

Mounts the flash image (creating and formatting it the first time, like a new board),
copies ``--config`` onto it as node.json (what ``mpremote cp`` does on a real node), then runs
exactly the code main.py runs on an MCU. ``quantrac firmware run`` starts this under a
watchdog supervisor; tests start it directly when they want to SIGKILL the node itself.

Options: --port PTY (required), --flash IMAGE (default node-flash.img), --flash-kb N (size
of a new image, default 1408 = a Pico's filesystem), --config FILE, --ctl FILE, --status FILE,
--heartbeat FILE, --reset-cause power|wdt|soft.
"""

import sys

import vfs

sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0] if "/" in sys.argv[0] else ".")

import node
from hal.unix import FileBlockDev, UnixHal


def _args(argv: list) -> dict:
    out = {"--flash": "node-flash.img", "--flash-kb": "1408", "--reset-cause": "power"}
    i = 0
    while i < len(argv):
        k = argv[i]
        if not k.startswith("--") or i + 1 >= len(argv):
            print("usage: unix_main.py --port PTY [--flash IMAGE] [--config FILE] [--ctl FILE]"
                  " [--status FILE] [--heartbeat FILE]; bad argument %r" % k)
            sys.exit(2)
        out[k] = argv[i + 1]
        i += 2
    if "--port" not in out:
        print("unix_main.py: --port PTY is required")
        sys.exit(2)
    return out


def main() -> None:
    a = _args(sys.argv[1:])
    bdev = FileBlockDev(a["--flash"], int(a["--flash-kb"]) * 1024 // 4096)
    # The stubs declare VfsLfs2 a subclass of their AbstractBlockDev (it is not; a block device
    # is any object with readblocks/writeblocks/ioctl), hence the ignores.
    try:
        fs = vfs.VfsLfs2(bdev)  # type: ignore[abstract, arg-type]
    except OSError:
        print("flash %s: no filesystem, formatting" % a["--flash"])
        vfs.VfsLfs2.mkfs(bdev)  # type: ignore[arg-type]
        fs = vfs.VfsLfs2(bdev)  # type: ignore[abstract, arg-type]
    vfs.mount(fs, UnixHal.ROOT)
    if "--config" in a:
        with open(a["--config"], "rb") as src:
            data = src.read()
        with open(UnixHal.ROOT + "/node.json", "wb") as dst:
            dst.write(data)
    hal = UnixHal(a["--port"], a.get("--ctl"), a.get("--status"), a.get("--heartbeat"),
                  a["--reset-cause"])
    node.run(hal)


main()
