"""The node's config file (``node.json`` on the flash), validated at boot.

JSON because MicroPython parses it natively in a few hundred bytes of heap; every key is
checked, and the first mistake is reported on the console naming the file, the key path and
the value, e.g. ``node.json: analog[1].hi = 3: expected a number above lo (4)``. A config
that fails is not half-applied: the node runs on :data:`SAFE` (unit 247, 9600 8N1, analog
channels reporting milliamps, no pulse scaling) and sets NODE_CONFIG_DEFAULT in its status
register, so the gateway sees it too. Example and key list: firmware/README.md.
"""

import json

import regmap

BAUDS = (9600, 19200, 38400, 57600, 115200)
SAFE_UNIT = 247

SAFE = {
    "unit": SAFE_UNIT, "baud": 9600, "parity": "N", "period_s": 60, "scan_ms": 1000,
    "oversample": 16, "filter": "median", "log_capacity": 40960, "watchdog_ms": 8000,
    "analog": [{"name": "AI%d" % (i + 1), "lo": 4.0, "hi": 20.0, "unit": "mA"}
               for i in range(regmap.MAX_ANALOG)],
    "pulse": [], "digital": [],
}

_TOP = ("unit", "baud", "parity", "period_s", "scan_ms", "oversample", "filter",
        "log_capacity", "watchdog_ms", "analog", "pulse", "digital")


class ConfigError(Exception):
    pass


def _num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(doc: dict, key: str, path: str, lo: int, hi: int, default: int) -> int:
    v = doc.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ConfigError("%s = %r: expected an integer in %d..%d" % (path, v, lo, hi))
    return v


def _name(doc: dict, path: str, default: str) -> str:
    v = doc.get("name", default)
    if not isinstance(v, str) or not 1 <= len(v) <= 32:
        raise ConfigError("%s.name = %r: expected a name of 1..32 characters" % (path, v))
    return v


def _list(doc: dict, key: str, most: int) -> list:
    v = doc.get(key, [])
    if not isinstance(v, list) or len(v) > most:
        raise ConfigError("%s = %r: expected a list of at most %d channels" % (key, v, most))
    for i, item in enumerate(v):
        if not isinstance(item, dict):
            raise ConfigError("%s[%d] = %r: expected an object" % (key, i, item))
    return v


def validate(doc: object) -> dict:
    """The checked config with defaults filled in; raises ConfigError naming key and value."""
    if not isinstance(doc, dict):
        raise ConfigError("<top> = %r: expected a JSON object" % (doc,))
    for k in doc:
        if k not in _TOP:
            raise ConfigError("%s: unknown key; expected one of %s" % (k, ", ".join(_TOP)))
    out: dict = {}
    out["unit"] = _int(doc, "unit", "unit", 1, 247, 1)
    baud = doc.get("baud", 9600)
    if baud not in BAUDS or isinstance(baud, bool):
        raise ConfigError("baud = %r: expected one of %s" % (baud, BAUDS))
    out["baud"] = baud
    parity = doc.get("parity", "N")
    if parity not in ("N", "E", "O"):
        raise ConfigError("parity = %r: expected N, E or O" % (parity,))
    out["parity"] = parity
    period = _int(doc, "period_s", "period_s", 1, 3600, 60)
    if 3600 % period:
        raise ConfigError("period_s = %d: expected a divisor of 3600 (the log aligns to the "
                          "hour, so 5-minute averages get whole samples)" % period)
    out["period_s"] = period
    out["scan_ms"] = _int(doc, "scan_ms", "scan_ms", 10, 10000, 1000)
    out["oversample"] = _int(doc, "oversample", "oversample", 1, 64, 16)
    filt = doc.get("filter", "median")
    if filt not in ("median", "mean"):
        raise ConfigError("filter = %r: expected median or mean" % (filt,))
    out["filter"] = filt
    out["log_capacity"] = _int(doc, "log_capacity", "log_capacity", 64, 1_000_000, 40960)
    out["watchdog_ms"] = _int(doc, "watchdog_ms", "watchdog_ms", 500, 8000, 8000)
    analog = []
    for i, ch in enumerate(_list(doc, "analog", regmap.MAX_ANALOG)):
        path = "analog[%d]" % i
        for k in ch:
            if k not in ("name", "lo", "hi", "unit"):
                raise ConfigError("%s.%s: unknown key; expected name, lo, hi, unit" % (path, k))
        lo, hi = ch.get("lo", 4.0), ch.get("hi", 20.0)
        if not _num(lo):
            raise ConfigError("%s.lo = %r: expected a number" % (path, lo))
        if not _num(hi) or not hi > lo:
            raise ConfigError("%s.hi = %r: expected a number above lo (%r)" % (path, hi, lo))
        unit = ch.get("unit", "")
        if not isinstance(unit, str):
            raise ConfigError("%s.unit = %r: expected a string" % (path, unit))
        analog.append({"name": _name(ch, path, "AI%d" % (i + 1)), "lo": float(lo),
                       "hi": float(hi), "unit": unit})
    out["analog"] = analog
    pulse = []
    for i, ch in enumerate(_list(doc, "pulse", regmap.MAX_PULSE)):
        path = "pulse[%d]" % i
        for k in ch:
            if k not in ("name", "debounce_ms"):
                raise ConfigError("%s.%s: unknown key; expected name, debounce_ms" % (path, k))
        pulse.append({"name": _name(ch, path, "P%d" % (i + 1)),
                      "debounce_ms": _int(ch, "debounce_ms", path + ".debounce_ms", 0, 1000, 5)})
    out["pulse"] = pulse
    digital = []
    for i, ch in enumerate(_list(doc, "digital", regmap.MAX_DIGITAL)):
        path = "digital[%d]" % i
        for k in ch:
            if k not in ("name", "debounce_ms"):
                raise ConfigError("%s.%s: unknown key; expected name, debounce_ms" % (path, k))
        digital.append({"name": _name(ch, path, "DI%d" % (i + 1)),
                        "debounce_ms": _int(ch, "debounce_ms", path + ".debounce_ms", 0, 10000,
                                            50)})
    out["digital"] = digital
    return out


def load(path: str, name: str = "node.json") -> tuple[dict, str | None]:
    """(config, error text or None). Never raises: a broken file gives SAFE and the error."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        return dict(SAFE), "%s: cannot be read (%s)" % (name, exc)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return dict(SAFE), "%s: not valid JSON (%s)" % (name, exc)
    try:
        return validate(doc), None
    except ConfigError as exc:
        return dict(SAFE), "%s: %s" % (name, exc.args[0])


def save(path: str, cfg: dict) -> None:
    """Write the config whole: a temporary file renamed over the old one (atomic on littlefs)."""
    import os

    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(json.dumps(cfg))
    os.rename(tmp, path)
