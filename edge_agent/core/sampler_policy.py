"""When the automatic sampler may start: cooldown and daily cap, decided without I/O.

Pure: the station's trigger history and ``now`` in, a yes or the reason for no out. The
daemon asks before it flags a record ``SAMPLER_TRIGGERED`` (so the flag is decided with the
record, before it is stored and sent) and before it obeys ``quantrac sampler trigger``; the
sampler's own thread does the Modbus writing (``edge_agent.poll.sampler``).

* Cooldown: no start within ``cooldown_s`` of the previous one, automatic or by command; an
  exceedance lasting several windows starts the sampler once.
* Daily cap: at most ``daily_cap`` starts per *local* day (the station's zone: the operator
  changes bottles by the wall clock), counted from the starts since local midnight.
* A start that the sampler did not answer still counts: whether the pump ran is unknown, and
  retrying it on every window of the event would hammer a dead bus.
* A clock that jumps back makes a start look "in the future": it still blocks until the
  cooldown has passed after it, which errs on the side of fewer starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.averaging.windows import floor_start

DAY_S = 86_400


@dataclass
class SamplerPolicy:
    cooldown_s: float
    daily_cap: int
    utc_offset_s: int
    starts: list[float] = field(default_factory=list)  # wall times of the starts, oldest first

    def refusal(self, now: float) -> str | None:
        """Why a start at ``now`` is not allowed, or None when it is."""
        if self.starts and now < self.starts[-1] + self.cooldown_s:
            wait = self.starts[-1] + self.cooldown_s - now
            return f"cooldown: last start {now - self.starts[-1]:.0f} s ago, next in {wait:.0f} s"
        today = self.today(now)
        if today >= self.daily_cap:
            return f"daily cap: {today} of {self.daily_cap} starts today"
        return None

    def today(self, now: float) -> int:
        """Starts since local midnight."""
        midnight = floor_start(int(now), DAY_S, self.utc_offset_s)
        return sum(1 for t in self.starts if midnight <= t <= now)

    def start(self, now: float) -> str | None:
        """Take a start at ``now`` if allowed (None), else the reason it is not."""
        why = self.refusal(now)
        if why is None:
            self.starts.append(now)
            del self.starts[:-max(self.daily_cap, 1) - 1]  # enough to count a day
        return why
