"""Run the MQTT uplink on its own:
``python -m edge_agent.uplinks.mqtt.run --state-dir DIR --outbox DB``.

Drains a station's outbox to the centre with the provisioned identity, until SIGTERM (or, with
``--until-drained``, until every record is acknowledged). The agent daemon runs the same
``MqttUplink``; this entry exists so an uplink can be a process of its own (drills, backfill
from a copied outbox, the crash tests that SIGKILL it mid-drain).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from edge_agent.daemon import logs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_agent.uplinks.mqtt.run")
    parser.add_argument("--state-dir", type=Path, required=True, help="provisioned state dir")
    parser.add_argument("--outbox", type=Path, required=True, help="the outbox SQLite file")
    parser.add_argument(
        "--until-drained",
        action="store_true",
        help="exit 0 once every record is acknowledged by the centre",
    )
    parser.add_argument("--window", type=int, default=8, help="packets in flight (default 8)")
    parser.add_argument(
        "--ack-timeout",
        type=float,
        default=60.0,
        help="seconds before an unacknowledged packet is sent again",
    )
    parser.add_argument(
        "--max-packet",
        type=int,
        default=None,
        help="largest packet in bytes (default: the envelope's 64 KiB)",
    )
    parser.add_argument(
        "--max-packets-per-s",
        type=float,
        default=0.0,
        help="pace the drain on a metered link (default 0: no limit)",
    )
    parser.add_argument(
        "--backoff-cap",
        type=float,
        default=60.0,
        help="longest wait between reconnect attempts, seconds (default 60)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logs.configure(args.log_level)

    from buffer import Store
    from edge_agent.uplinks.mqtt.uplink import MqttUplink, UplinkSettings
    from provisioning import identity
    from provisioning.errors import ProvisioningError

    try:
        ident = identity.load(args.state_dir)
    except ProvisioningError as exc:
        print(f"uplink: error: {exc}", file=sys.stderr)
        return 1
    settings = replace(
        UplinkSettings.from_identity(ident),
        window=args.window,
        ack_timeout=args.ack_timeout,
        max_packets_per_s=args.max_packets_per_s,
        backoff_cap=args.backoff_cap,
    )
    if args.max_packet is not None:
        settings = replace(settings, max_packet=args.max_packet)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))
    with Store(args.outbox) as outbox:
        uplink = MqttUplink(settings, outbox, args.outbox.with_name(args.outbox.name + ".uplink"))
        next_check = 0.0

        def done() -> bool:
            nonlocal next_check
            if stopping:
                return True
            if not args.until_drained or not uplink.idle or time.monotonic() < next_check:
                return False
            next_check = time.monotonic() + 0.2
            return outbox.status().unacked == 0

        uplink.run(done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
