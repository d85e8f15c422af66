"""Entry point on the MCU (MicroPython runs main.py after boot): pick the board's HAL, run."""

import sys

import node

if sys.platform == "rp2":
    from hal.rp2 import Rp2Hal as Board
elif sys.platform == "esp32":
    from hal.esp32 import Esp32Hal as Board  # type: ignore[assignment]
else:
    raise SystemExit("main.py is for rp2/esp32; on the unix port run unix_main.py")

node.run(Board())
