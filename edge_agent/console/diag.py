"""The logic of ``quantrac diag``: scan a bus, interpret raw words, render the watch table.

Pure where it can be (formatting and profile guessing take words and samples, return text),
so the CLI in :mod:`edge_agent.console.diag_cli` is only argument parsing and I/O. Everything
printed fits an 80-column terminal: a technician on a serial console has nothing wider.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from drivers.codec import decode_value, word_count
from drivers.decode import decode_samples
from drivers.modbus import ModbusError, ModbusExceptionResponse
from drivers.planner import ReadBlock, plan_reads
from drivers.profile import Profile, profile_registers
from drivers.transport import LinkError, Transport, TransportTimeout
from edge_agent.core.plausibility import plausible_sample
from protocol.model import Sample

WIDTH = 80


# --------------------------------------------------------------------------- read


def word_table(address: int, words: Sequence[int]) -> list[str]:
    """One line per word: register, hex, unsigned and signed decimal."""
    lines = [f"{'register':>8}  {'hex':>6}  {'uint16':>6}  {'int16':>6}"]
    for i, w in enumerate(words):
        signed = w - 0x10000 if w & 0x8000 else w
        lines.append(f"{address + i:>8}  0x{w:04X}  {w:>6}  {signed:>6}")
    return lines


def _fmt(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.7g}"


def pair_table(address: int, words: Sequence[int]) -> list[str]:
    """32-bit readings of each adjacent word pair, in both word orders.

    ``big`` word order is high word first (ABCD), ``little`` is low word first (CDAB, the
    Hach sc default). A float that reads 2.4e-41 in one order and 25.3 in the other tells the
    technician which order the device uses (drivers/codec.py explains the 2.4e-41).
    """
    if len(words) < 2:
        return []
    lines = [f"{'registers':>11}  {'words':<6}  {'int32':>11}  {'uint32':>10}  {'float32':>14}"]
    for i in range(len(words) - 1):
        pair = words[i:i + 2]
        for order, label in (("big", "ABCD"), ("little", "CDAB")):
            i32 = decode_value(pair, "int32", "big", order)
            u32 = decode_value(pair, "uint32", "big", order)
            f32 = decode_value(pair, "float32", "big", order)
            regs = f"{address + i}-{address + i + 1}" if order == "big" else ""
            lines.append(f"{regs:>11}  {label:<6}  {_fmt(i32):>11}  {_fmt(u32):>10}  "
                         f"{_fmt(f32):>14}")
    return lines


def typed_values(address: int, words: Sequence[int], dtype: str, byte_order: str,
                 word_order: str) -> list[str]:
    """Each consecutive ``dtype`` value in ``words``, one line per value with its registers;
    words left over (a count that is not a multiple of the type's size) are named."""
    size = word_count(dtype)
    lines = []
    whole = len(words) - len(words) % size
    for i in range(0, whole, size):
        regs = f"{address + i}" if size == 1 else f"{address + i}-{address + i + size - 1}"
        try:
            value = _fmt(decode_value(list(words[i:i + size]), dtype, byte_order, word_order))
        except (ValueError, struct.error) as exc:
            value = f"cannot decode: {exc}"
        lines.append(f"  registers {regs:>11}  {value}")
    if whole < len(words):
        left = len(words) - whole
        lines.append(f"  register {address + whole}: {left} word(s) left over "
                     f"({dtype} takes {size})")
    return lines


# --------------------------------------------------------------------------- scan


@dataclass(frozen=True, slots=True)
class Guess:
    """How well one profile's first block decodes from a unit: plausible channels / all."""

    profile: str
    plausible: int
    channels: int

    @property
    def score(self) -> float:
        return self.plausible / self.channels if self.channels else 0.0


@dataclass(slots=True)
class ScanHit:
    unit: int
    answer: str  # "data" or the exception it answered with
    guesses: list[Guess] = field(default_factory=list)


def profile_blocks(profile: Profile) -> list[ReadBlock]:
    """Every read the profile needs (a value's status word may sit in a later block)."""
    return plan_reads(profile_registers(profile), max_count=profile.max_read)


def guess_profile(profile: Profile, image: Mapping[tuple[int, int], int]) -> Guess:
    """Score ``profile`` against the words a unit returned for the profile's blocks.

    A channel counts when its sample passes the one plausibility rule
    (:func:`edge_agent.core.plausibility.plausible_sample`, every channel judged, integers
    too), the rule the poller's live guard applies to floats.
    """
    samples = decode_samples(profile, image, 0.0)
    good = sum(plausible_sample(profile.channel(s.channel), s) for s in samples)
    return Guess(profile.name, good, len(samples))


def probe_unit(transport: Transport, unit: int, profiles: Sequence[Profile],
               timeout: float) -> ScanHit | None:
    """Does ``unit`` answer, and which profiles does it look like? None if silent.

    The probe is each profile's reads in turn; any answer (data or a Modbus exception)
    proves the unit is there. A unit that is silent to the first read is not asked again:
    that is what keeps a scan of 247 ids short. A profile is scored by how many of its
    channels decode to values near their usual range.
    """
    hit: ScanHit | None = None
    for n, profile in enumerate(profiles):
        image: dict[tuple[int, int], int] = {}
        try:
            for block in profile_blocks(profile):
                words = transport.read_registers(unit, block.function, block.address,
                                                 block.count, timeout)
                image.update(((block.function, block.address + i), w)
                             for i, w in enumerate(words))
        except TransportTimeout:
            if n == 0 and hit is None:
                return None
            continue
        except ModbusExceptionResponse as exc:
            hit = hit or ScanHit(unit, f"exception {exc.code:02d}")
            continue
        except LinkError:
            raise
        except ModbusError:  # garbled: someone is there
            hit = hit or ScanHit(unit, "bad frame")
            continue
        if hit is None or hit.answer != "data":
            hit = ScanHit(unit, "data", hit.guesses if hit else [])
        hit.guesses.append(guess_profile(profile, image))
    if hit is not None:
        hit.guesses.sort(key=lambda g: (-g.score, -g.plausible, g.profile))
    return hit


def scan(transport: Transport, units: Iterable[int], profiles: Sequence[Profile],
         timeout: float, progress: Callable[[int, int, int], None] | None = None
         ) -> tuple[list[ScanHit], bool]:
    """(hits, complete): probe every unit in turn, ``progress(done, total, found)`` after each.

    Ctrl-C (KeyboardInterrupt) stops the scan early and keeps what it found.
    """
    todo = list(units)
    hits: list[ScanHit] = []
    try:
        for i, unit in enumerate(todo, 1):
            hit = probe_unit(transport, unit, profiles, timeout)
            if hit is not None:
                hits.append(hit)
            if progress:
                progress(i, len(todo), len(hits))
    except KeyboardInterrupt:
        return hits, False
    return hits, True


def scan_report(hits: Sequence[ScanHit], complete: bool) -> list[str]:
    lines = [f"{'unit':>4}  {'answer':<16}  looks like (channels with plausible values)"]
    for hit in hits:
        if hit.guesses and hit.guesses[0].plausible:
            best = hit.guesses[0].score
            likely = [g for g in hit.guesses if g.plausible and g.score == best]
            looks = ", ".join(f"{g.profile} ({g.plausible}/{g.channels})" for g in likely)
        else:
            looks = "no built-in profile fits"
        lines.append(f"{hit.unit:>4}  {hit.answer[:16]:<16}  {looks}"[:WIDTH])
    lines.append(f"{len(hits)} unit(s) answered" + ("" if complete else " (scan interrupted)"))
    return lines


# --------------------------------------------------------------------------- watch


@dataclass(frozen=True, slots=True)
class Row:
    device: str
    channel: str
    unit: str
    sample: Sample | None  # None: not polled yet


def watch_table(rows: Sequence[Row], now: float) -> list[str]:
    """The live table: device, channel, value, unit, status, age (s since measured)."""
    lines = [f"{'device':<14} {'channel':<9} {'value':>13} {'unit':<9} {'status':<11} "
             f"{'age s':>6}"]
    for r in rows:
        s = r.sample
        if s is None:
            value, status, age = "-", "waiting", "-"
        else:
            value = "-" if math.isnan(s.value) else f"{s.value:.6g}"
            status = s.status.name.lower()
            age = f"{max(0.0, now - s.t):.1f}"
        lines.append(f"{r.device[:14]:<14} {r.channel[:9]:<9} {value[:13]:>13} "
                     f"{r.unit[:9]:<9} {status:<11} {age:>6}")
    return lines
