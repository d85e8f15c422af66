"""Sans-IO decoding of register words into samples, and its inverse for the simulator.

The poller reads blocks planned by drivers.planner into a register image (which words came
back); this module turns the image into one Sample per channel. Its one rule: a word that
was not read is never guessed (a record built on a guessed word would be a false legal
measurement). Any missing value or status word gives an OFFLINE sample with a NaN value; a
non-finite float from the device gives a FAULT sample with a NaN value (analysers send NaN or
Inf when a sensor is broken or a value is out of range).
"""

from __future__ import annotations

import dataclasses
import math
import operator
import struct
import weakref
from collections.abc import Callable, Collection, Mapping
from typing import Any

from drivers.codec import decode_value, encode_value, value_codec
from drivers.profile import ChannelSpec, Profile, StatusSpec
from protocol.model import Sample, Status

RegisterImage = Mapping[tuple[int, int], int]

DEVICE = "*"  # key of the device status in encode_image's ``statuses``

# When a channel has its own state and the device has a status too, the graver one wins.
_SEVERITY = {Status.MEASURING: 0, Status.CALIBRATING: 1, Status.MAINTENANCE: 2, Status.FAULT: 3,
             Status.OFFLINE: 4}


def worst(*statuses: Status) -> Status:
    """The gravest of ``statuses`` (MEASURING < CALIBRATING < MAINTENANCE < FAULT < OFFLINE)."""
    return max(statuses, key=_SEVERITY.__getitem__, default=Status.MEASURING)


def _status(spec: StatusSpec | None, image: RegisterImage) -> Status | None:
    """The status word's meaning; None if the word was not read, MEASURING if there is none."""
    if spec is None:
        return Status.MEASURING
    word = image.get((spec.function, spec.address))
    if word is None:
        return None
    return spec.status_of(word)


def decode_channel(ch: ChannelSpec, device_status: StatusSpec | None, image: RegisterImage,
                   t: float) -> Sample:
    words = [image.get(reg) for reg in ch.registers()]
    own = _status(ch.status, image)
    dev = _status(device_status, image)
    if own is None or dev is None or any(w is None for w in words):
        return Sample.offline(ch.name, t)
    raw = decode_value([w for w in words if w is not None], ch.dtype, ch.byte_order,
                       ch.word_order)
    value = raw * ch.scale + ch.offset
    if not math.isfinite(value):
        return Sample(ch.name, t, math.nan, Status.FAULT)
    return Sample(ch.name, t, float(value), worst(own, dev))


@dataclasses.dataclass(frozen=True, slots=True)
class _ChannelPlan:
    """One channel's share of a :class:`_DecodePlan`: where its value sits in the packed words."""

    name: str
    unpack_from: Callable[[bytes, int], tuple[Any, ...]]
    offset_bytes: int
    scale: float
    offset: float
    status: StatusSpec | None
    status_index: int  # where its status word sits in what the plan fetches (if it has one)


@dataclasses.dataclass(frozen=True, slots=True)
class _DecodePlan:
    """Everything :func:`decode_samples` can work out from the profile alone, done once.

    ``fetch`` takes from the image every value word of every channel, in the order the words
    are packed (each value's words reversed where its codec says so), then every status word
    (the device's first), so that one ``struct.pack`` both checks that every word is a 16-bit
    register value and turns the values into bytes, and one ``unpack_from`` per channel reads
    each value. ``first_status`` is where the status words start in what ``fetch`` returns.
    """

    specs: tuple[ChannelSpec, ...]
    fetch: Callable[[RegisterImage], tuple[int, ...]]
    pack: Callable[..., bytes]
    first_status: int
    channels: tuple[_ChannelPlan, ...]
    device_status: StatusSpec | None


def _build_plan(profile: Profile, channels: tuple[str, ...] | None) -> _DecodePlan:
    specs = profile.channels if channels is None else tuple(profile.channel(n) for n in channels)
    dev = profile.device_status
    keys: list[tuple[int, int]] = []
    status_keys = [] if dev is None else [(dev.function, dev.address)]
    plans = []
    for ch in specs:
        codec = value_codec(ch.dtype, ch.byte_order, ch.word_order)
        regs = ch.registers()
        plans.append(_ChannelPlan(ch.name, codec.unpack.unpack_from, 2 * len(keys), ch.scale,
                                  ch.offset, ch.status, len(status_keys)))
        if ch.status is not None:
            status_keys.append((ch.status.function, ch.status.address))
        keys.extend(reversed(regs) if codec.reverse else regs)
    first_status = len(keys)
    keys += status_keys
    plans = [dataclasses.replace(c, status_index=first_status + c.status_index) for c in plans]
    if len(keys) == 1:  # itemgetter of one key gives the word itself, not a tuple
        fetch = _one_word(keys[0])
    else:  # itemgetter of no key fails: no channel asked for and no status word
        fetch = operator.itemgetter(*keys) if keys else lambda image: ()
    return _DecodePlan(specs, fetch, struct.Struct(f">{len(keys)}H").pack, first_status,
                       tuple(plans), dev)


def _one_word(key: tuple[int, int]) -> Callable[[RegisterImage], tuple[int, ...]]:
    return lambda image: (image[key],)


# Plans by id(profile) (a Profile holds dicts, so it is not hashable), then by channel tuple.
# Each entry also holds a weak reference whose callback drops the entry when the profile dies,
# so an id reused by a later profile never finds a stale plan.
_PLANS: dict[int, tuple[weakref.ref[Profile], dict[tuple[str, ...] | None, _DecodePlan]]] = {}


def _plan(profile: Profile, channels: Collection[str] | None) -> _DecodePlan:
    key = None if channels is None else tuple(channels)
    pid = id(profile)
    entry = _PLANS.get(pid)
    if entry is None or entry[0]() is not profile:
        entry = (weakref.ref(profile, lambda _ref: _PLANS.pop(pid, None)), {})
        _PLANS[pid] = entry
    plan = entry[1].get(key)
    if plan is None:
        plan = entry[1][key] = _build_plan(profile, key)
    return plan


def decode_samples(profile: Profile, image: RegisterImage, t: float,
                   channels: Collection[str] | None = None) -> list[Sample]:
    """One Sample per channel (profile order, or the order of ``channels``), measured at ``t``.

    The common case (every word present and 16-bit) runs on a plan cached per profile and
    channel list; anything else falls back to :func:`decode_channel`, which gives the same
    samples (and the same errors) one channel at a time.
    """
    plan = _plan(profile, channels)
    try:
        words = plan.fetch(image)
        buf = plan.pack(*words)
    except (KeyError, struct.error):  # a word not read (missing or None), or not 16-bit
        return _one_by_one(profile, plan, image, t)
    dev_spec = plan.device_status
    dev = Status.MEASURING if dev_spec is None else dev_spec.status_of(words[plan.first_status])
    severity = _SEVERITY
    out = []
    for c in plan.channels:
        value = c.unpack_from(buf, c.offset_bytes)[0] * c.scale + c.offset
        if not math.isfinite(value):
            out.append(Sample(c.name, t, math.nan, Status.FAULT))
            continue
        status = dev
        if c.status is not None:
            own = c.status.status_of(words[c.status_index])
            if severity[own] >= severity[dev]:
                status = own
        out.append(Sample(c.name, t, float(value), status))
    return out


def _one_by_one(profile: Profile, plan: _DecodePlan, image: RegisterImage,
                t: float) -> list[Sample]:
    """The slow path: decode_channel says which channel is offline and which word is bad."""
    return [decode_channel(ch, profile.device_status, image, t) for ch in plan.specs]


def raw_value(ch: ChannelSpec, value: float) -> float | int:
    """The raw number the device stores for engineering ``value`` (integers rounded)."""
    raw = (value - ch.offset) / ch.scale
    if ch.dtype.startswith(("int", "uint")):
        if not math.isfinite(raw):
            raise ValueError(f"channel {ch.name}: {value!r} cannot be stored as {ch.dtype}")
        return round(raw)
    return raw


def encode_image(profile: Profile, values: Mapping[str, float],
                 statuses: Mapping[str, Status] | None = None) -> dict[tuple[int, int], int]:
    """The register image a device would hold for ``values`` and ``statuses``.

    Only channels named in ``values`` are written (with their status registers). A channel's
    status defaults to MEASURING. The device status register says ``statuses[DEVICE]`` if
    given, else the gravest status of the channels written. Status registers shared between
    several statuses (different masks) are OR-ed together; bits outside every mask are 0.
    Raises ValueError if a value does not fit its type or a status cannot be expressed.
    """
    statuses = statuses or {}
    image: dict[tuple[int, int], int] = {}

    def put_status(spec: StatusSpec, status: Status) -> None:
        key = (spec.function, spec.address)
        image[key] = image.get(key, 0) | ((spec.raw_for(status) << spec.shift) & spec.mask)

    written: list[Status] = []
    for name, value in values.items():
        ch = profile.channel(name)
        words = encode_value(raw_value(ch, value), ch.dtype, ch.byte_order, ch.word_order)
        image.update(zip(ch.registers(), words, strict=True))
        status = statuses.get(name, Status.MEASURING)
        written.append(status)
        if ch.status:
            put_status(ch.status, status)
    if profile.device_status:
        put_status(profile.device_status, statuses.get(DEVICE, worst(*written)))
    return image
