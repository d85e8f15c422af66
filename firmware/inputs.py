"""Input conditioning, identical on every port: 4-20 mA scaling with NAMUR NE 43 limits,
oversampling with a median or mean filter, debounce for pulse and digital inputs.

Front end (firmware/README.md, "Wiring"): the loop current flows through a 250 ohm shunt
(1-5 V at 4-20 mA); a 10k/15k divider (gain 0.6) brings that into the 3.3 V ADC range; the
divider loads the shunt, so the effective resistance is 250 || 25k = 247.525 ohm and the ADC
sees 148.515 mV per mA. 3.3 V full scale is 22.22 mA, above the NE 43 "high fault" limit of
21 mA, so a failed-high transmitter is still measured as such and not clipped.

Resolution: the RP2040 and ESP32 ADCs are 12-bit; one count is 3.3 V / 4096 = 0.806 mV =
5.425 uA, i.e. 0.0339 % of the 16 mA span, so an engineering value is exact to
(hi - lo) * 0.000339. Oversampling with the mean improves that when there is noise (dither);
the median rejects spikes (a pump starting). Both are kept per scan, not across scans.

NE 43: below 3.6 mA or above 21 mA the signal is a failure: status ST_LOW / ST_HIGH and no
value (NaN on the wire, which the gateway's decoder turns into a FAULT sample). Between 3.6
and 3.8 mA or 20.5 and 21 mA it is an under/over-range measurement and is scaled linearly.
"""

import regmap

VREF = 3.3
ADC_BITS = 12
ADC_FULL = 1 << ADC_BITS
SHUNT_OHM = 250.0 * 25000.0 / (250.0 + 25000.0)
GAIN = 0.6
MA_PER_COUNT = VREF / ADC_FULL / (SHUNT_OHM * GAIN) * 1000.0
NE43_LOW = 3.6
NE43_HIGH = 21.0
NAN = float("nan")


def counts_for_ma(ma: float) -> int:
    """The ADC reading a loop current gives (the unix HAL uses this to emulate the ADC)."""
    c = int(ma / MA_PER_COUNT + 0.5)
    return 0 if c < 0 else (ADC_FULL - 1 if c >= ADC_FULL else c)


def filtered(samples: list[int], how: str) -> float:
    """Median (spike-proof) or mean (dither-averaging) of one scan's oversamples."""
    if how == "mean":
        return sum(samples) / len(samples)
    s = sorted(samples)
    n = len(s)
    mid = n // 2
    return float(s[mid]) if n % 2 else (s[mid - 1] + s[mid]) / 2.0


def scale(ma: float, lo: float, hi: float) -> tuple[float, int]:
    """(engineering value, ST_*) of a loop current: 4 mA = lo, 20 mA = hi."""
    if ma < NE43_LOW:
        return NAN, regmap.ST_LOW
    if ma > NE43_HIGH:
        return NAN, regmap.ST_HIGH
    return lo + (ma - 4.0) * (hi - lo) / 16.0, regmap.ST_OK


class Debounce:
    """Edge debounce for a pulse input: an edge closer than ``ms`` to the last accepted one
    is contact bounce and is not counted. Used inside the pin IRQ on the MCU ports (no
    allocation: two ints), and by the unix HAL for the edges the test drives."""

    def __init__(self, us: int) -> None:
        self.us = us
        self.last = 0
        self.count = 0
        self.armed = False

    def edge(self, now_us: int, diff: int) -> None:
        """``diff`` = time.ticks_diff(now_us, self.last), given by the caller."""
        if self.armed and diff < self.us:
            return
        self.armed = True
        self.last = now_us
        self.count += 1


class Level:
    """Debounce for a digital input: a new level counts once it has held for ``ms``."""

    def __init__(self, ms: int) -> None:
        self.ms = ms
        self.state = 0
        self.cand = 0
        self.since = 0

    def update(self, raw: int, now_ms: int) -> int:
        if raw != self.cand:
            self.cand = raw
            self.since = now_ms
        elif raw != self.state and now_ms - self.since >= self.ms:
            self.state = raw
        return self.state
