"""The faults a simulated analyser can show on the wire, as pure byte transformations.

Each one reproduces something field devices do, so that the poller is tested against the
failures it will meet rather than a perfect peer: a dead unit (``no_answer``), line
noise (``crc_error``: a frame whose CRC does not match; over TCP, which has no CRC, the PDU's
byte count is corrupted instead so the frame is still provably broken), a device refusing
(``exception`` with a chosen code), a device babbling (``garbage``: random bytes), a slow
device (``slow``: answers after ``delay`` seconds), and a device whose 32/64-bit values come
with their words in the other order (``wrong_word_order``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from drivers.modbus import EXCEPTION_NAMES
from drivers.profile import Profile

FAULTS = ("no_answer", "crc_error", "exception", "garbage", "slow", "wrong_word_order")


@dataclass(frozen=True)
class FaultSpec:
    """A fault and its option: ``code`` for ``exception``, ``delay`` seconds for ``slow``."""

    name: str
    code: int = 4
    delay: float = 2.0

    def __post_init__(self) -> None:
        if self.name not in FAULTS:
            raise ValueError(f"unknown fault {self.name!r}, expected one of {', '.join(FAULTS)}")
        if self.code not in EXCEPTION_NAMES:
            raise ValueError(f"exception code {self.code} is not a Modbus exception code "
                             f"({', '.join(map(str, sorted(EXCEPTION_NAMES)))})")
        if not 0 <= self.delay <= 600:
            raise ValueError(f"delay {self.delay} s is outside 0..600")


def corrupt_rtu_crc(frame: bytes) -> bytes:
    """The same frame with its CRC's high byte inverted: any CRC check fails."""
    return frame[:-1] + bytes((frame[-1] ^ 0xFF,))


def corrupt_tcp_pdu(adu: bytes) -> bytes:
    """An MBAP frame whose PDU byte count (byte 8) disagrees with the data that follows."""
    return adu[:8] + bytes((adu[8] ^ 0x80,)) + adu[9:]


def garbage(rng: random.Random) -> bytes:
    """3 to 40 random bytes: what a device with a wrong baud rate or a broken UART sends."""
    return rng.randbytes(rng.randint(3, 40))


def swap_words(profile: Profile, image: dict[tuple[int, int], int]) -> dict[tuple[int, int], int]:
    """``image`` with the words of every multi-word value in reverse order."""
    out = dict(image)
    for ch in profile.channels:
        regs = ch.registers()
        if len(regs) > 1 and all(r in image for r in regs):
            for reg, word in zip(regs, reversed([image[r] for r in regs]), strict=True):
                out[reg] = word
    return out
