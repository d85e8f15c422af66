"""docs/protocol.md's worked example is what the code produces, and its packet opens."""

from __future__ import annotations

import math
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol import envelope as env
from protocol.model import Record, RecordFlag, Status
from protocol.payload import same_record

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def example_blocks() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    example = text[text.index("## Worked example") :]
    return re.findall(r"```\n(.*?)```", example, flags=re.S)


def hex_of(block: str) -> bytes:
    """The hex of a block: each line up to its comment (two or more spaces)."""
    lines = block.splitlines()
    return bytes.fromhex("".join(re.split(r"\s{2,}", line.strip())[0] for line in lines))


def test_worked_example_matches_the_code() -> None:
    keys_block, payload_b, header_b, sig_b, sealed_b, command_b = example_blocks()
    keys = {
        line[:30].strip(): bytes.fromhex(line[30:].strip()) for line in keys_block.splitlines()
    }
    station = Ed25519PrivateKey.from_private_bytes(keys["station Ed25519 private seed"])
    centre = X25519PrivateKey.from_private_bytes(keys["centre X25519 private"])
    command = Ed25519PrivateKey.from_private_bytes(keys["command Ed25519 private seed"])
    for name, priv in (("station", station), ("centre", centre), ("command", command)):
        pub = priv.public_key()
        assert pub.public_bytes(Encoding.Raw, PublicFormat.Raw) == keys[f"{name} public"]
        assert env.key_id(pub) == keys[f"{name} key_id"]

    records = [
        (41, Record("pH", 1763900100, 1763900400, 7.25, 7.0, 7.5, 0.125, 30, 30, True,
                    Status.MEASURING, "pH")),
        (42, Record("COD", 1763900100, 1763900400, math.nan, math.nan, math.nan, math.nan, 0,
                    30, False, Status.OFFLINE, "mg/L", RecordFlag.PARTIAL)),
    ]  # fmt: skip
    payload = env.encode_records(records)
    assert payload == hex_of(payload_b)
    header = env.Header(1, 1, "HN-KCN-01", env.key_id(station.public_key()),
                        env.key_id(centre.public_key()), 41, 42, 1763900405123)  # fmt: skip
    sealed = hex_of(sealed_b)
    assert header.to_bytes(len(sealed)) == hex_of(header_b)
    head = hex_of(header_b)
    assert station.sign(env.SIG_CONTEXT + head + payload) == hex_of(sig_b)

    def lookup(station_id: str, kid: bytes) -> Ed25519PublicKey:
        return station.public_key()

    opened = env.open_packet(head + sealed, centre, lookup)
    assert opened.header == header and opened.payload == payload
    assert all(same_record(a[1], b[1]) for a, b in zip(opened.records, records, strict=True))

    cmd = env.Command("ack", "HN-KCN-01", 7, 1763900410000, env.ranges_body([(41, 42)]))
    assert env.sign_command(cmd, command) == hex_of(command_b)
    assert env.open_command(hex_of(command_b), command.public_key(), "HN-KCN-01", 6) == cmd
