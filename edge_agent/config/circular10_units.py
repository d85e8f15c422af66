"""Unit labels as Circular 10 files carry them: ASCII only, and the few conversions between them.

Receivers in service read the unit column as ASCII (``oC``, ``m3/h``, ``mg/L``, ``mg/Nm3``,
``ug/m3``, ``%``, ``hPa``); a ``°C`` or ``µg/m3`` written in UTF-8 arrives as mojibake
(``Â°C``) in a receiver that reads the file as Windows-1252, or is refused. The station's
own labels (``[device.channels.X] unit``, shown in ``quantrac status`` and sent over MQTT) may
keep their typography: :func:`ascii_unit` gives the file's form of one, and
:func:`conversion` the factor when a province wants another unit than the one displayed
(``ug/m3`` for a channel shown in ``mg/m3``).

Plain data and pure functions: the reader checks a receiver profile with them, the renderer
applies them, so a label the config accepts is exactly the label the file carries.
"""

from __future__ import annotations

_ASCII = str.maketrans({
    "°": "o", "º": "o", "µ": "u", "μ": "u", "³": "3", "²": "2", "¹": "1", "·": ".",
    "₂": "2", "₃": "3", "₄": "4", "ₓ": "x", "‰": "%o", "℃": "oC",
})  # fmt: skip
_SPELLED = {"degC": "oC", "deg C": "oC", "DegC": "oC", "Cel": "oC"}  # whole labels

# (from, to): multiply the value by this. Only conversions a province has asked for; a
# missing pair is refused by the config, never guessed.
_FACTORS: dict[tuple[str, str], float] = {
    ("mg/m3", "ug/m3"): 1000.0,
    ("ug/m3", "mg/m3"): 0.001,
    ("mg/Nm3", "ug/Nm3"): 1000.0,
    ("ug/Nm3", "mg/Nm3"): 0.001,
    ("m3/s", "m3/h"): 3600.0,
    ("m3/h", "m3/s"): 1 / 3600.0,
    ("L/s", "m3/h"): 3.6,
    ("m3/h", "L/s"): 1 / 3.6,
    ("m3/d", "m3/h"): 1 / 24.0,
    ("m3/h", "m3/d"): 24.0,
    ("kPa", "hPa"): 10.0,
    ("hPa", "kPa"): 0.1,
}


def ascii_unit(unit: str) -> str:
    """The file's form of a display label: ``°C`` -> ``oC``, ``µg/m3`` -> ``ug/m3``,
    ``m³/h`` -> ``m3/h``, ``degC`` -> ``oC`` (the receivers' spelling). Characters with no
    ASCII form stay (see :func:`is_ascii_unit`)."""
    return _SPELLED.get(unit, unit).translate(_ASCII)


def is_ascii_unit(unit: str) -> bool:
    """What a file's unit column may hold: printable ASCII without blanks (a blank would split
    the column for a receiver that splits on whitespace), 1 to 32 characters."""
    return 0 < len(unit) <= 32 and all("!" <= c <= "~" for c in unit)


def conversion(display: str, transmit: str) -> float | None:
    """The factor from a value in ``display`` to one in ``transmit`` (1.0 when they are the
    same unit once written in ASCII), or None when no conversion is known."""
    source = ascii_unit(display)
    if source == transmit:
        return 1.0
    return _FACTORS.get((source, transmit))


def known_targets(display: str) -> list[str]:
    """The transmit units a value shown in ``display`` can be sent in (for error messages)."""
    source = ascii_unit(display)
    return [source, *sorted(t for (f, t) in _FACTORS if f == source)]
