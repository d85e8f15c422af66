"""The coverage fraction each window width needs, as the station's own rules set it.

A reason such as ``coverage 44/60 < 75%`` (``protocol.record_view.reason``) must name the
station's threshold, not the default, wherever records are shown: ``quantrac history`` and
the station page both take it from here. It imports the config model only for type checking:
``quantrac history --help`` must not pay for loading the averaging rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_agent.config.model import StationConfig


def thresholds(cfg: StationConfig) -> dict[int, float]:
    """Window width -> the coverage fraction the station's rule for it needs."""
    out = {w: cfg.averaging.rule.min_fraction for w in cfg.averaging.windows}
    out.update({r.width: r.rule.min_fraction for r in cfg.averaging.rollups})
    # a rolling average (8-hour CO/O3) is valid with min_valid of its span child records
    out.update({ro.rolling.width_s: ro.rolling.min_valid / ro.rolling.span
                for ro in cfg.averaging.rolling})
    return out
