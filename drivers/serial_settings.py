"""How to open a serial line (port, baud, parity, stop bits): plain data, no pyserial.

It lives apart from :mod:`drivers.transport` (which opens the port with pyserial) so that a
station config can say which line a bus is on without importing pyserial: reading or checking
a config, or building a pipeline in a test, must not need a serial port library.
"""

from __future__ import annotations

from dataclasses import dataclass

PARITY_LETTERS = ("N", "E", "O")
"""None, even, odd. Modbus RTU is 8 data bits; :mod:`drivers.transport` maps each to pyserial."""


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """How to open the line. ``parity`` is N, E or O; Modbus RTU is 8 data bits."""

    port: str
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1

    def __post_init__(self) -> None:
        if self.parity not in PARITY_LETTERS:
            raise ValueError(f"parity {self.parity!r} is not one of N, E, O")
        if self.stopbits not in (1, 2):
            raise ValueError(f"stop bits {self.stopbits} is not 1 or 2")
        if self.baud <= 0:
            raise ValueError(f"baud rate {self.baud} is not positive")
