"""Sans-IO decoding of register words into samples, and its inverse for the simulator.

The poller reads blocks planned by drivers.planner into a register image (which words came
back); this module turns the image into one Sample per channel. Its one rule, from DESIGN §5: a
word that was not read is never guessed. Any missing value or status word gives an OFFLINE
sample with a NaN value; a non-finite float from the device gives a FAULT sample with a NaN
value (analysers send NaN or Inf when a sensor is broken or a value is out of range).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from drivers.codec import decode_value, encode_value
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


def decode_samples(profile: Profile, image: RegisterImage, t: float,
                   channels: Collection[str] | None = None) -> list[Sample]:
    """One Sample per channel (profile order, or the order of ``channels``), measured at ``t``."""
    specs = profile.channels if channels is None else [profile.channel(n) for n in channels]
    return [decode_channel(ch, profile.device_status, image, t) for ch in specs]


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
