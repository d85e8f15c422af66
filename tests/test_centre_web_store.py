"""The store's reads the dashboard and the open-data feed add (centre/store.py), on both
backends: birth/will state, the newest valid record per channel and window width, the
window widths of a period, the raw rows of a select, the gaps read only."""

from __future__ import annotations

import math
from pathlib import Path

from centre.receiver import state_of
from centre.store import CentreStore
from protocol.model import Record, RecordFlag, Status
from protocol.record_filter import RecordFilter

T0 = 1_764_561_600


def rec(channel: str, start: int, width: int, mean: float, valid: bool = True,
        flags: RecordFlag = RecordFlag.NONE) -> Record:
    return Record(channel, start, start + width, mean, mean, mean, 0.0, 10, 10, valid,
                  Status.MEASURING if valid else Status.OFFLINE, "mg/L", flags)


def test_state_since_changes_only_with_the_state(store_location: Path | str) -> None:
    now = [1000.0]
    with CentreStore(store_location, clock=lambda: now[0]) as store:
        store.station_state("S1", "online")
        now[0] = 1010.0
        store.station_state("S1", "online")  # the retained message again: no change
        assert store.station_states() == {"S1": ("online", 1000.0)}
        now[0] = 1020.0
        store.station_state("S1", "offline")
        assert store.station_states() == {"S1": ("offline", 1020.0)}
    assert state_of(b'{"state": "online", "station": "S1"}') == "online"
    assert state_of(b'{"state": "<script>"}') == "unknown"
    assert state_of(b"\xff not json") == "unknown"


def test_latest_valid_per_channel_and_width(store_location: Path | str) -> None:
    with CentreStore(store_location, clock=lambda: T0 + 9000.0) as store:
        records = [
            (1, rec("COD", T0, 300, 10.0)),
            (2, rec("COD", T0 + 300, 300, 11.0)),
            (3, rec("COD", T0 + 600, 300, math.nan, valid=False)),  # newest, invalid
            (4, rec("COD", T0, 3600, 10.5)),
            (5, rec("pH", T0, 300, 7.1)),
        ]
        store.ingest("S1", records, b"d" * 32, 0)
        got = [(r.record.channel, r.record.end - r.record.start, r.seq)
               for r in store.latest_valid("S1")]
        assert got == [("COD", 300, 2), ("COD", 3600, 4), ("pH", 300, 5)]
        assert store.latest_valid("nobody") == []
        assert [r.seq for r in store.latest_valid("S1", T0 + 300)] == [2]  # COD 300 only
        assert store.exceedance_counts("S1") == {}
        store.ingest("S1", [(6, rec("pH", T0 + 300, 300, 9.9, flags=RecordFlag.EXCEEDANCE)),
                            (7, rec("pH", T0 + 600, 300, 9.8, flags=RecordFlag.EXCEEDANCE))],
                     b"e" * 32, 0)
        assert store.exceedance_counts("S1") == {"pH": 2}
        assert store.exceedance_counts("S1", T0 + 600) == {"pH": 1}
        # which ones, newest first, only the channels asked (the public ones), at most limit
        assert [r.seq for r in store.exceedances("S1", ["pH", "TSS"], T0, 5)] == [7, 6]
        assert [r.seq for r in store.exceedances("S1", ["pH"], T0, 1)] == [7]
        assert store.exceedances("S1", ["COD"], T0, 5) == []
        assert store.exceedances("S1", [], T0, 5) == []
        assert store.window_widths("S1", T0, T0 + 3600) == [300, 3600]
        assert store.window_widths("S1", T0 + 300, T0 + 3600) == [300]
        rows = store.select_rows(RecordFilter(station="S1", window_s=300))
        assert [r[1] for r in rows] == [r.seq for r in store.select(
            RecordFilter(station="S1", window_s=300))] == [1, 5, 2, 6, 3, 7]


def test_gaps_reads_what_holes_finds_without_moving_the_mark(
        store_location: Path | str) -> None:
    with CentreStore(store_location, clock=lambda: T0 + 9000.0) as store:
        store.ingest("S1", [(1, rec("pH", T0, 300, 7.0)), (2, rec("pH", T0 + 300, 300, 7.0))],
                     b"a" * 32, 0)
        store.ingest("S1", [(5, rec("pH", T0 + 1200, 300, 7.0))], b"b" * 32, 0)
        store.ingest("S1", [(8, rec("pH", T0 + 2100, 300, 7.0))], b"c" * 32, 0)
        assert store.gaps("S1") == [(3, 4), (6, 7)]
        assert store.gaps("S1") == [(3, 4), (6, 7)]  # read only: the same again
        assert store.holes("S1") == [(3, 4), (6, 7)]
        store.ingest("S1", [(3, rec("pH", T0 + 600, 300, 7.0)),
                            (4, rec("pH", T0 + 900, 300, 7.0))], b"d" * 32, 0)
        assert store.gaps("S1") == [(6, 7)]
        assert store.gaps("nobody") == []


def test_the_receiver_records_each_state_message(tmp_path: Path) -> None:
    """What paho hands the receiver for a station's retained birth/will message ends in the
    store as that station's state (the topic names the station; the body is the station's)."""
    import paho.mqtt.client as mqtt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from centre.receiver import Receiver, ReceiverSettings

    now = [1000.0]
    with CentreStore(tmp_path / "c.sqlite", clock=lambda: now[0]) as store:
        settings = ReceiverSettings("127.0.0.1", 1, Path("ca"), Path("cert"), Path("key"))
        rx = Receiver(settings, store, lambda data: None,  # type: ignore[arg-type,return-value]
                      Ed25519PrivateKey.generate(), clock=lambda: now[0])
        for payload in (b'{"state": "online", "station": "S1"}', b'{"state": "offline"}'):
            msg = mqtt.MQTTMessage(topic=b"quantrac/v1/S1/state")
            msg.payload = payload
            rx._on_message(None, None, msg)  # type: ignore[arg-type]
            now[0] += 5
        assert store.station_states() == {"S1": ("offline", 1005.0)}
