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
from typing import Any

from drivers.codec import decode_value, word_count
from drivers.decode import decode_samples
from drivers.modbus import ModbusError, ModbusExceptionResponse
from drivers.planner import ReadBlock, plan_reads
from drivers.profile import ChannelSpec, Profile, profile_registers
from drivers.transport import LinkError, Transport, TransportTimeout
from edge_agent.console.width import WIDTH, wrap
from edge_agent.core.plausibility import plausible_sample
from protocol.model import Sample

# --------------------------------------------------------------------------- read


def word_table(address: int, words: Sequence[int]) -> list[str]:
    """One line per word: register, hex, unsigned and signed decimal."""
    lines = [f"{'register':>8}  {'hex':>6}  {'uint16':>6}  {'int16':>6}"]
    for i, w in enumerate(words):
        signed = w - 0x10000 if w & 0x8000 else w
        lines.append(f"{address + i:>8}  0x{w:04X}  {w:>6}  {signed:>6}")
    return lines


def exception_hint(code: object, function: int) -> str:
    """What to try after an exception 02 (illegal data address): many analysers keep their
    values in input registers (function 04) where the default read asks holding registers
    (03), or the other way round. Empty for any other answer."""
    if code != 2:
        return ""
    if function == 3:
        return "; try --function 4 (input registers)"
    return "; try --function 3 (holding registers)"


def channel_table(address: int, words: Sequence[int], channels: Sequence[ChannelSpec]
                  ) -> list[str]:
    """One line per word, named with the profile channel it belongs to; on a channel's first
    register, its value decoded the profile's way (type, byte and word order, scale)."""
    owner: dict[int, tuple[ChannelSpec, int]] = {}
    for ch in channels:
        for k in range(ch.words):
            owner.setdefault(ch.address + k, (ch, k))
    lines = [f"{'register':>8}  {'hex':>6}  {'uint16':>6}  {'int16':>6}  channel"]
    for i, w in enumerate(words):
        signed = w - 0x10000 if w & 0x8000 else w
        reg = address + i
        label = ""
        if reg in owner:
            ch, k = owner[reg]
            label = ch.name if ch.words == 1 else f"{ch.name} ({k + 1}/{ch.words})"
            if k == 0 and i + ch.words <= len(words):
                try:
                    raw = decode_value(list(words[i:i + ch.words]), ch.dtype, ch.byte_order,
                                       ch.word_order)
                    label += f" = {_fmt(raw * ch.scale + ch.offset)} {ch.unit}".rstrip()
                except (ValueError, struct.error):
                    label += " (cannot decode)"
        line = f"{reg:>8}  0x{w:04X}  {w:>6}  {signed:>6}  {label}".rstrip()
        lines.append(line[:WIDTH])
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


def hit_dict(hit: ScanHit) -> dict[str, Any]:
    """``hit`` as the control socket's ``scan`` answer carries it (JSON)."""
    return {"unit": hit.unit, "answer": hit.answer,
            "guesses": [[g.profile, g.plausible, g.channels] for g in hit.guesses]}


def hit_from_dict(d: Mapping[str, Any]) -> ScanHit:
    return ScanHit(int(d["unit"]), str(d["answer"]),
                   [Guess(str(p), int(n), int(c)) for p, n, c in d.get("guesses", [])])


#: exceptions a TCP gateway answers for a unit behind it that does not answer (0A: no path
#: to it, 0B: it did not respond): the gateway is there, the unit is not
GATEWAY_SILENT = ("exception 10", "exception 11")


def best_guesses(hit: ScanHit) -> list[Guess]:
    """The profiles that fit ``hit`` best (more than one when they tie), none if none fits."""
    if not hit.guesses or not hit.guesses[0].plausible:
        return []
    # the guesses are sorted by score, then plausible channels: a profile that explains
    # more registers at the same score (3/3 against 2/2) is the more specific fit
    best = hit.guesses[0]
    return [g for g in hit.guesses if (g.score, g.plausible) == (best.score, best.plausible)]


def _looks(hit: ScanHit) -> str:
    """What a unit looks like, said one way: one profile matches, or several tie (and the
    scan cannot tell them apart), or none fits."""
    likely = best_guesses(hit)
    if not likely:
        return "no known profile fits"
    if len(likely) == 1:
        g = likely[0]
        return f"matches {g.profile} ({g.plausible}/{g.channels} channels plausible)"
    return "cannot tell: " + " or ".join(f"{g.profile} ({g.plausible}/{g.channels})"
                                         for g in likely)


def scan_report(hits: Sequence[ScanHit], complete: bool) -> list[str]:
    """One line per unit that answered: ``unit 1: data, matches liquiline (3/3 channels
    plausible)``; long lines wrap under the unit, never past ``WIDTH``."""
    lines = ["what answers (channels that decode plausibly / all, per profile):"]
    for hit in hits:
        what = hit.answer
        text = f"unit {hit.unit}: {what}" + (
            f", {_looks(hit)}" if hit.answer == "data" else "")
        lines += wrap(text)
    lines.append(f"{len(hits)} unit(s) answered" + ("" if complete else " (scan interrupted)"))
    return lines


@dataclass(frozen=True, slots=True)
class Configured:
    """A ``[[device]]`` of the scanned bus, as the scan is compared with it."""

    device: str
    unit: int
    profile: str


def _fits(hit: ScanHit, profile: str) -> Guess | None:
    return next((g for g in best_guesses(hit) if g.profile == profile), None)


def compare_with_config(hits: Sequence[ScanHit], configured: Sequence[Configured],
                        scanned: Iterable[int]) -> list[str]:
    """What answers against what the station config says should: per configured device
    found (and whether it looks like its profile), silent, or answering at another unit id
    (mis-addressed); then the units nobody configured. Lines fit ``WIDTH``."""
    by_unit = {h.unit: h for h in hits if h.answer not in GATEWAY_SILENT}
    scanned_set = set(scanned)
    mine = {c.unit for c in configured}
    strays = [h for u, h in sorted(by_unit.items()) if u not in mine]
    claimed: set[int] = set()
    lines: list[str] = []
    for c in configured:
        who = f"unit {c.unit} ({c.device}, profile {c.profile})"
        hit = by_unit.get(c.unit)
        if c.unit not in scanned_set:
            lines += wrap(f"{who}: not scanned")
            continue
        if hit is not None and hit.answer == "data":
            g = _fits(hit, c.profile)
            if g is not None:
                lines += wrap(f"{who}: found, matches its profile "
                              f"({g.plausible}/{g.channels} channels plausible)")
            else:
                lines += wrap(f"{who}: answers, but not like {c.profile}; {_looks(hit)}")
            continue
        if hit is not None:
            lines += wrap(f"{who}: answers {hit.answer} to its profile's reads "
                          "(wrong register map or function?)")
            continue
        elsewhere = [h for h in strays if _fits(h, c.profile) is not None]
        if elsewhere:
            claimed.update(h.unit for h in elsewhere)
            at = " and ".join(f"unit {h.unit}" for h in elsewhere)
            lines += wrap(f"{who}: SILENT; {at} answers like {c.device} (profile "
                          f"{c.profile}): mis-addressed? set the analyser's address to "
                          f"{c.unit}, or the config's unit to {elsewhere[0].unit}")
        else:
            lines += wrap(f"{who}: SILENT (no answer at unit {c.unit})")
    for h in strays:
        if h.unit in claimed:
            continue
        what = _looks(h) if h.answer == "data" else f"answers {h.answer}"
        lines += wrap(f"unit {h.unit}: not in the config; {what}")
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
