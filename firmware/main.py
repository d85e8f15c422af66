"""Entry point on the MCU (MicroPython runs main.py after boot): pick the board's HAL, run."""

import sys

import node
from hal.base import Hal


def board() -> Hal:
    if sys.platform == "rp2":
        from hal.rp2 import Rp2Hal

        return Rp2Hal()
    if sys.platform == "esp32":
        from hal.esp32 import Esp32Hal

        return Esp32Hal()
    raise SystemExit("main.py is for rp2/esp32; on the unix port run unix_main.py")


node.run(board())
