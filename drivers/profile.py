"""Analyser profiles: one TOML register map per analyser model, loaded and validated here.

A profile says, for each channel, where its value lives (function 03 holding / 04 input
registers, 0-based protocol address as sent on the wire, not the "40001" catalogue numbering),
how it is encoded (data type, byte and word order, scale and offset) and where its status comes
from (a per-channel state register, a device-wide status register, or none: always measuring).
The poller, the decoder, the simulator and ``quantrac diag`` all read the same profile, so the
simulated analyser and the real one can never disagree about the register map.

Schema (see drivers/profiles/*.toml for complete examples)::

    name = "hach_sc"                      # built-in profiles: the file stem
    model = "Hach sc1000-style controller"
    max_read = 125                        # optional: most words the device serves per read
    [defaults]                            # optional: defaults for every channel
    function = 3
    dtype = "float32"
    byte_order = "big"
    word_order = "little"
    [device_status]                       # optional: one status register for the device
    address = 48                          # function defaults to [defaults].function
    mask = 0xFFFF                         # optional, default 0xFFFF; shift default 0
    default = "fault"                     # raw values not in map (default "fault")
    map = { 0 = "measuring", 1 = "calibrating", 2 = "maintenance", 3 = "fault" }
    [channels.COD]                        # the channel name: a Circular 10 symbol if one exists
    address = 0
    unit = "mg/L"
    range = [20.0, 120.0]                 # typical range (the simulator draws values in it)
    scale = 1.0                           # engineering = raw * scale + offset
    offset = 0.0
    status = { address = 2, mask = 0xFF00, shift = 8, map = { 0 = "measuring" } }
    # or a status register of bit flags: each listed bit says a status when set; when several
    # are set the first in ``priority`` wins (default: the gravest, fault > maintenance >
    # calibrating, then the lower bit); no listed bit set is ``default`` (here "measuring");
    # bits not listed (warnings, "service due") are ignored. Not with map, mask or shift.
    # status = { address = 2, bits = { 0 = "calibrating", 3 = "fault" }, priority = [3, 0] }

Every mistake raises :class:`ProfileError` naming the file, the key path and the value.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.codec import DTYPES, ORDERS, word_count
from protocol.config_file import ConfigError, Reader, read_toml
from protocol.model import Status

PROFILE_DIR = Path(__file__).with_name("profiles")
MAX_READ = 125

# Statuses an analyser can report; OFFLINE is ours alone (no answer) and cannot be mapped.
_STATUS_NAMES = {
    "measuring": Status.MEASURING,
    "calibrating": Status.CALIBRATING,
    "fault": Status.FAULT,
    "maintenance": Status.MAINTENANCE,
}
_TOP_KEYS = {"name", "model", "description", "max_read", "defaults", "device_status", "channels"}
_DEFAULT_KEYS = {"function", "dtype", "byte_order", "word_order"}
_CHANNEL_KEYS = {"address", "unit", "range", "scale", "offset", "status", *_DEFAULT_KEYS}
_STATUS_KEYS = {"function", "address", "mask", "shift", "map", "default", "bits", "priority"}
# The default priority of bit flags: the graver status wins (decode.worst's order).
_GRAVITY = (Status.FAULT, Status.MAINTENANCE, Status.CALIBRATING, Status.MEASURING)


class ProfileError(ConfigError):
    """A profile that cannot be used; names the file, the key path and the offending value.

    The message and the type checks are :mod:`protocol.config_file`'s, the same as every config
    file's; a profile stops at the first mistake (later checks need the earlier values).
    """


@dataclass(frozen=True)
class StatusSpec:
    """Where a status lives and what its raw values mean.

    raw = (word & mask) >> shift; ``mapping`` turns raw into our Status; any raw value the
    maker did not document is ``default`` (normally FAULT: an unknown code is not a reading).

    A register of bit flags (``priority`` not empty) is read differently, because an analyser
    sets several at once (calibrating while a fault is latched): ``priority`` lists the bits in
    the order they win, ``mapping`` has ``1 << bit`` for each, ``mask`` is their union, and
    ``default`` is the status when none is set. The raw values of ``mapping`` are then words
    with one flag set, so :meth:`raw_for` and the simulator need nothing of their own.
    """

    function: int
    address: int
    mask: int = 0xFFFF
    shift: int = 0
    mapping: Mapping[int, Status] = field(default_factory=dict)
    default: Status = Status.FAULT
    priority: tuple[int, ...] = ()

    def status_of(self, word: int) -> Status:
        if self.priority:
            for bit in self.priority:
                if word >> bit & 1:
                    return self.mapping[1 << bit]
            return self.default
        return self.mapping.get((word & self.mask) >> self.shift, self.default)

    def raw_for(self, status: Status) -> int:
        """A raw value that decodes to ``status`` (the smallest documented one)."""
        for raw in sorted(self.mapping):
            if self.mapping[raw] is status:
                return raw
        if status is self.default:
            raw = 0
            while raw in self.mapping:
                raw += 1
            if (raw << self.shift) & self.mask == raw << self.shift:
                return raw
        raise ValueError(f"status register {self.function}:{self.address} cannot say {status.name}")


@dataclass(frozen=True)
class ChannelSpec:
    """One measured value: where it lives and how to turn its words into engineering units."""

    name: str
    function: int
    address: int
    dtype: str
    byte_order: str = "big"
    word_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    status: StatusSpec | None = None
    lo: float = 0.0
    hi: float = 1.0

    @property
    def words(self) -> int:
        return word_count(self.dtype)

    def registers(self) -> list[tuple[int, int]]:
        return [(self.function, self.address + i) for i in range(self.words)]


@dataclass(frozen=True)
class Profile:
    """A validated register map of one analyser model."""

    name: str
    model: str
    channels: tuple[ChannelSpec, ...]
    device_status: StatusSpec | None = None
    source: str = ""
    max_read: int = MAX_READ

    def channel(self, name: str) -> ChannelSpec:
        for ch in self.channels:
            if ch.name == name:
                return ch
        raise KeyError(f"profile {self.name} has no channel {name!r}")

    @property
    def channel_names(self) -> list[str]:
        return [ch.name for ch in self.channels]


# --------------------------------------------------------------------------- loading

def builtin_profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def builtin_profile(name: str) -> Profile:
    path = PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        raise ProfileError.one(path, "name", name,
                               "a built-in profile (no such built-in profile; known: "
                               f"{', '.join(builtin_profile_names())})")
    return load_profile(path)


def load_profile(path: str | Path) -> Profile:
    doc = read_toml(path, ProfileError, " (a duplicate [channels.X] table is reported here)")
    return parse_profile(doc, path)


def parse_profile(doc: Mapping[str, Any], source: str | Path) -> Profile:
    """Validate an already-parsed TOML document (tests and tools build profiles this way)."""
    p = _Parser(str(source))
    return p.profile(doc)


class _Parser(Reader):
    def __init__(self, source: str) -> None:
        super().__init__(source, ProfileError, collect=False)

    def profile(self, doc: Mapping[str, Any]) -> Profile:
        doc = self.table(doc, "", _TOP_KEYS)
        name = self.get(doc, "name", "", "str")
        model = self.get(doc, "model", "", "str", name)
        description = self.get(doc, "description", "", "str", "")
        max_read = self.get(doc, "max_read", "", "int", MAX_READ)
        if not 1 <= max_read <= MAX_READ:
            raise self.error("max_read", max_read, f"a count in 1..{MAX_READ}")
        defaults = self.table(doc.get("defaults", {}), "defaults", _DEFAULT_KEYS)
        base_function = self.choice(defaults, "function", "defaults", (3, 4), 3)
        device_status = None
        if "device_status" in doc:
            device_status = self.status(doc["device_status"], "device_status", base_function)
        chans = self.get(doc, "channels", "", "table")
        if not chans:
            raise self.error("channels", {}, "at least one channel")
        channels = []
        seen: dict[str, str] = {}
        for ch_name, ch_doc in chans.items():
            folded = ch_name.casefold()
            if folded in seen:
                raise self.error(f"channels.{ch_name}", ch_name,
                                 f"a channel name not defined before (a duplicate of "
                                 f"{seen[folded]!r})")
            seen[folded] = ch_name
            channels.append(self.channel(ch_name, ch_doc, defaults))
        profile = Profile(name=name, model=model or description, channels=tuple(channels),
                          device_status=device_status, source=self.source, max_read=max_read)
        self.check_overlaps(profile)
        return profile

    def channel(self, name: str, doc: Any, defaults: Mapping[str, Any]) -> ChannelSpec:
        path = f"channels.{name}"
        if not name.replace("_", "").replace(",", "").isalnum():
            raise self.error(path, name, "a channel name of letters, digits, '_' or ','")
        doc = self.table(doc, path, _CHANNEL_KEYS)
        merged = {**defaults, **doc}
        function = self.choice(merged, "function", path, (3, 4), 3)
        dtype = self.choice(merged, "dtype", path, DTYPES)
        byte_order = self.choice(merged, "byte_order", path, ORDERS, "big")
        word_order = self.choice(merged, "word_order", path, ORDERS, "big")
        address = self.address(merged, path, word_count(dtype))
        scale: float = self.get(doc, "scale", path, "number", 1.0, check=lambda v: v != 0,
                                expected="a finite, non-zero number")
        offset: float = self.get(doc, "offset", path, "number", 0.0,
                                 expected="a finite number")
        unit = self.get(doc, "unit", path, "str", "")
        rng = self.get(doc, "range", path, "list")
        if (len(rng) != 2 or not all(isinstance(x, int | float) and not isinstance(x, bool)
                                     and math.isfinite(x) for x in rng) or not rng[0] < rng[1]):
            raise self.error(f"{path}.range", rng, "[low, high] with low < high")
        status = None
        if "status" in doc:
            status = self.status(doc["status"], f"{path}.status", function)
        return ChannelSpec(name=name, function=function, address=address, dtype=dtype,
                           byte_order=byte_order, word_order=word_order, scale=scale,
                           offset=offset, unit=unit, status=status,
                           lo=float(rng[0]), hi=float(rng[1]))

    def address(self, doc: Mapping[str, Any], path: str, words: int) -> int:
        address: int = self.get(doc, "address", path, "int")
        if not 0 <= address <= 0xFFFF - (words - 1):
            raise self.error(f"{path}.address", address,
                             f"a register address in 0..{0xFFFF - (words - 1)} "
                             f"(the value takes {words} word(s))")
        return address

    def status(self, doc: Any, path: str, function: int) -> StatusSpec:
        doc = self.table(doc, path, _STATUS_KEYS)
        function = self.choice(doc, "function", path, (3, 4), function)
        address = self.address(doc, path, 1)
        if "bits" in doc or "priority" in doc:
            return self.flag_status(doc, path, function, address)
        mask = self.get(doc, "mask", path, "int", 0xFFFF)
        if not 1 <= mask <= 0xFFFF:
            raise self.error(f"{path}.mask", mask, "a 16-bit mask, 0x0001..0xFFFF")
        shift = self.get(doc, "shift", path, "int", 0)
        if not 0 <= shift <= 15 or (mask >> shift) << shift != mask:
            raise self.error(f"{path}.shift", shift,
                             f"0..15 with no mask bit below it (mask {mask:#06x})")
        names = ", ".join(_STATUS_NAMES)
        default_name = self.choice(doc, "default", path, _STATUS_NAMES, "fault")
        raw_map = self.get(doc, "map", path, "table")
        mapping: dict[int, Status] = {}
        for key, value in raw_map.items():
            kpath = f"{path}.map.{key}"
            try:
                raw = int(key, 0)
            except ValueError:
                raise self.error(kpath, key, "an integer raw value as key") from None
            if not 0 <= raw <= mask >> shift:
                raise self.error(kpath, raw, f"a raw value that fits the mask (0..{mask >> shift})")
            if value not in _STATUS_NAMES:
                raise self.error(kpath, value, f"one of {names}")
            mapping[raw] = _STATUS_NAMES[value]
        return StatusSpec(function=function, address=address, mask=mask, shift=shift,
                          mapping=mapping, default=_STATUS_NAMES[default_name])

    def flag_status(self, doc: Mapping[str, Any], path: str, function: int,
                    address: int) -> StatusSpec:
        """A status register of bit flags (``bits``, optional ``priority`` and ``default``)."""
        for key in ("map", "mask", "shift"):
            if key in doc:
                raise self.error(f"{path}.{key}", doc[key],
                                 "no map, mask or shift with bits (a bit flag is its own mask)")
        raw_bits = self.get(doc, "bits", path, "table")
        if not raw_bits:
            raise self.error(f"{path}.bits", {}, "at least one bit, e.g. { 3 = \"fault\" }")
        mapping: dict[int, Status] = {}
        for key, value in raw_bits.items():
            kpath = f"{path}.bits.{key}"
            try:
                bit = int(key, 0)
            except ValueError:
                raise self.error(kpath, key, "a bit number 0..15 as key") from None
            if not 0 <= bit <= 15:
                raise self.error(kpath, bit, "a bit number 0..15")
            if value not in _STATUS_NAMES or value == "measuring":
                raise self.error(kpath, value, "one of calibrating, fault, maintenance (a set "
                                 "flag that means measuring is not a flag; leave it out)")
            mapping[1 << bit] = _STATUS_NAMES[value]
        bits = [raw.bit_length() - 1 for raw in mapping]
        gravest = sorted(bits, key=lambda b: (_GRAVITY.index(mapping[1 << b]), b))
        priority = self.get(doc, "priority", path, "list", gravest)
        if sorted(p for p in priority if isinstance(p, int)) != sorted(bits) \
                or len(priority) != len(bits):
            raise self.error(f"{path}.priority", priority,
                             f"each bit of bits once, the winner first (bits {sorted(bits)})")
        default = self.choice(doc, "default", path, _STATUS_NAMES, "measuring")
        mask = 0
        for raw in mapping:
            mask |= raw
        return StatusSpec(function=function, address=address, mask=mask, mapping=mapping,
                          default=_STATUS_NAMES[default], priority=tuple(priority))

    def check_overlaps(self, profile: Profile) -> None:
        """No word may carry two values, or a value and a status.

        Status words may be shared between statuses (one register holding two state bytes, or
        one device status read by every channel) as long as their masks do not overlap.
        """
        owner: dict[tuple[int, int], str] = {}
        for ch in profile.channels:
            for i, reg in enumerate(ch.registers()):
                if reg in owner:
                    raise self.error(f"channels.{ch.name}.address", ch.address,
                                     f"a register of its own (register {reg[0]}:{reg[1]}, word {i} "
                                     f"of this {ch.dtype}, overlaps {owner[reg]})")
                owner[reg] = f"channels.{ch.name}"
        masks: dict[tuple[int, int], tuple[int, str]] = {}
        specs: list[tuple[str, StatusSpec]] = [
            (f"channels.{ch.name}.status", ch.status) for ch in profile.channels if ch.status]
        if profile.device_status:
            specs.insert(0, ("device_status", profile.device_status))
        for path, spec in specs:
            reg = (spec.function, spec.address)
            if reg in owner:
                raise self.error(f"{path}.address", spec.address,
                                 f"a register of its own (status register {reg[0]}:{reg[1]} "
                                 f"overlaps {owner[reg]})")
            used, other = masks.get(reg, (0, ""))
            if used & spec.mask:
                raise self.error(f"{path}.mask", spec.mask,
                                 f"bits of register {reg[0]}:{reg[1]} not already used by "
                                 f"{other}")
            masks[reg] = (used | spec.mask, path)


def profile_registers(profile: Profile,
                      channels: Collection[str] | None = None) -> set[tuple[int, int]]:
    """Every (function, address) word the named channels need, their status registers included.

    ``channels=None`` means every channel. The device status register is always included.
    """
    wanted = profile.channel_names if channels is None else channels
    regs: set[tuple[int, int]] = set()
    for name in wanted:
        ch = profile.channel(name)
        regs.update(ch.registers())
        if ch.status:
            regs.add((ch.status.function, ch.status.address))
    if profile.device_status:
        regs.add((profile.device_status.function, profile.device_status.address))
    return regs


def profile_values(profile: Profile,
                   channels: Collection[str] | None = None) -> list[tuple[int, int, int]]:
    """``(function, address, words)`` of every multi-word value, for plan_reads(values=...)."""
    wanted = profile.channel_names if channels is None else channels
    return [(ch.function, ch.address, ch.words) for ch in map(profile.channel, wanted)
            if ch.words > 1]


def resolve_profile(ref: str, relative_to: str | Path | None = None) -> Profile:
    """A profile named in a config: a built-in name, or a path ending in ``.toml``.

    A relative path is taken relative to the directory of ``relative_to`` (the config file).
    """
    if ref.endswith(".toml"):
        path = Path(ref)
        if not path.is_absolute() and relative_to is not None:
            path = Path(relative_to).parent / path
        return load_profile(path)
    return builtin_profile(ref)
