"""The node's own Modbus core (firmware/mbrtu.py), cross-checked against drivers/modbus.py,
and the running node against noise.

The core runs under the MicroPython unix port (one process, many frames on stdin), so what
is compared is what the node executes. The fuzz half drives the live node on its pty:
random bytes, truncated and overlong frames, valid frames for other unit ids and broadcasts;
the node must stay up, answer its own unit after each, and never answer another unit.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from drivers import modbus
from provisioning.firmware_cli import FIRMWARE, NodeProcess, tool

UNIT = 21
HARNESS = """
import sys
sys.path.insert(0, FIRMWARE_DIR)
import binascii, mbrtu

class Dev(mbrtu.Device):
    def read(self, fc, addr, count):
        if addr + count > 1000:
            raise mbrtu.ModbusError(2)
        return [(a * 7 + fc * 1000) & 0xFFFF for a in range(addr, addr + count)]
    def write(self, fc, addr, words):
        if addr + len(words) > 10:
            raise mbrtu.ModbusError(2)

dev = Dev()
for line in sys.stdin:
    line = line.strip()
    if line.startswith("crc:"):
        print(mbrtu.crc16(binascii.unhexlify(line[4:])))
        continue
    out = mbrtu.answer(binascii.unhexlify(line), UNIT_ID, dev)
    print("-" if out is None else binascii.hexlify(out).decode())
"""


def run_core(lines: list[str]) -> list[str]:
    script = HARNESS.replace("FIRMWARE_DIR", repr(str(FIRMWARE))).replace("UNIT_ID", str(UNIT))
    out = subprocess.run([tool("micropython"), "-X", "heapsize=200k", "-c", script],
                         input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def expected(frame: bytes) -> bytes | None:
    """What a correct slave answers, built with drivers.modbus (and the FC06/16 rules)."""
    if len(frame) < 4 or modbus.crc16(frame[:-2]) != frame[-2] | frame[-1] << 8:
        return None
    if frame[0] not in (UNIT, 0):
        return None
    pdu = frame[1:-2]
    fc = pdu[0]
    if frame[0] == 0:
        return None
    if fc in (3, 4):
        if len(pdu) != 5:
            return modbus.rtu_exception_response(UNIT, fc, 3)
        _, addr, count = struct.unpack(">BHH", pdu)
        if not 1 <= count <= 125:
            return modbus.rtu_exception_response(UNIT, fc, 3)
        if addr + count > 1000:
            return modbus.rtu_exception_response(UNIT, fc, 2)
        words = [(a * 7 + fc * 1000) & 0xFFFF for a in range(addr, addr + count)]
        return modbus.rtu_read_response(UNIT, fc, words)
    if fc == 6:
        if len(pdu) != 5:
            return modbus.rtu_exception_response(UNIT, fc, 3)
        addr = pdu[1] << 8 | pdu[2]
        return (modbus.rtu_exception_response(UNIT, fc, 2) if addr + 1 > 10
                else frame)
    if fc == 16:
        if len(pdu) < 6:
            return modbus.rtu_exception_response(UNIT, fc, 3)
        addr, count = pdu[1] << 8 | pdu[2], pdu[3] << 8 | pdu[4]
        if not 1 <= count <= 123 or pdu[5] != 2 * count or len(pdu) != 6 + 2 * count:
            return modbus.rtu_exception_response(UNIT, fc, 3)
        if addr + count > 10:
            return modbus.rtu_exception_response(UNIT, fc, 2)
        return modbus._with_crc(bytes((UNIT,)) + pdu[:5])
    return modbus.rtu_exception_response(UNIT, fc, 1)


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<H", modbus.crc16(body))


def random_frames(rng: random.Random, n: int) -> Iterator[bytes]:
    for _ in range(n):
        kind = rng.randrange(6)
        unit = rng.choice([UNIT, UNIT, 0, 1, 247, rng.randrange(256)])
        if kind == 0:  # a well-formed read
            fc = rng.choice([3, 4])
            count = rng.randint(1, 125)
            addr = rng.randint(0, 1100)
            if addr + count > 0x10000:
                addr = 0
            yield modbus.rtu_read_request(unit if unit <= 247 else 1, fc, addr, count)
        elif kind == 1:  # FC16 write, sometimes with a lying byte count
            count = rng.randint(1, 12)
            words = [rng.randrange(65536) for _ in range(count)]
            bc = 2 * count if rng.random() < 0.7 else rng.randrange(256)
            yield _with_crc(struct.pack(f">BBHHB{count}H", unit, 16, rng.randint(0, 12),
                                        count, bc, *words))
        elif kind == 2:  # FC06
            yield _with_crc(struct.pack(">BBHH", unit, 6, rng.randint(0, 12),
                                        rng.randrange(65536)))
        elif kind == 3:  # any function, any length, valid CRC
            yield _with_crc(bytes([unit, rng.randrange(256)])
                            + rng.randbytes(rng.randint(0, 20)))
        elif kind == 4:  # noise
            yield rng.randbytes(rng.randint(0, 30))
        else:  # a valid frame with one bit flipped (bad CRC)
            f = bytearray(modbus.rtu_read_request(UNIT, 3, 0, 4))
            f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
            yield bytes(f)


def test_crc_matches_drivers_modbus() -> None:
    rng = random.Random(3)
    blobs = [rng.randbytes(rng.randint(0, 300)) for _ in range(200)]
    got = run_core([f"crc:{b.hex()}" for b in blobs])
    assert [int(x) for x in got] == [modbus.crc16(b) for b in blobs]


def test_answers_match_drivers_modbus_frame_for_frame() -> None:
    rng = random.Random(14)
    frames = [f for f in random_frames(rng, 3000) if f]
    got = run_core([f.hex() for f in frames])
    assert len(got) == len(frames)
    for frame, answer in zip(frames, got, strict=True):
        want = expected(frame)
        assert answer == ("-" if want is None else want.hex()), frame.hex()
    assert sum(a != "-" for a in got) > 500  # the corpus does reach the answering paths


def test_gap_lengths_follow_the_standard() -> None:
    script = (f"import sys\nsys.path.insert(0, {str(FIRMWARE)!r})\nimport mbrtu\n"
              "print([mbrtu.gap_us(b) for b in (9600, 19200, 38400, 115200)])")
    out = subprocess.run([tool("micropython"), "-c", script], capture_output=True, text=True,
                         timeout=30)
    got = json.loads(out.stdout)
    want = [modbus.rtu_frame_gap(b) * 1e6 for b in (9600, 19200, 38400, 115200)]
    assert [abs(g - w) < 1 for g, w in zip(got, want, strict=True)] == [True] * 4


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    cfg = {"unit": UNIT, "analog": [{"name": "Level", "lo": 0.0, "hi": 10.0}]}
    with NodeProcess(cfg, tmp_path) as n:
        n.set(ma=[12.0])
        n.start()
        yield n


def test_noise_and_malformed_frames_never_crash_hang_or_speak_for_another_unit(
        node: NodeProcess) -> None:
    rng = random.Random(99)
    own = modbus.rtu_read_request(UNIT, 4, 0, 4)
    port = serial.Serial(node.port, 9600, timeout=2)
    checked = 0
    frames = 0
    try:
        for i, junk in enumerate(random_frames(rng, 400)):
            if not junk or junk[:1] == bytes((UNIT,)):
                continue  # frames for our own unit are compared frame for frame above
            frames += 1  # counted by the test: the status file may lag behind the node
            for k in range(0, len(junk), 7):  # arriving in chunks, as from a real line
                port.write(junk[k:k + 7])
            frames = node.wait(lambda s, f=frames: s["frames"] >= f, 20,
                               f"junk {i} taken as a frame")["frames"]
            # Anything the node said about the junk would arrive before this answer.
            port.write(own)
            reply = port.read(13)
            assert reply[:3] == bytes((UNIT, 4, 8)) and modbus.crc16(reply[:-2]) == (
                reply[-2] | reply[-1] << 8), (i, junk.hex(), reply.hex())
            frames += 1
            checked += 1
        assert checked > 250
        assert port.in_waiting == 0
        # a long burst of random bytes with no gap: dropped whole, the next request answered
        before = (node.status() or {})["dropped"]
        port.write(rng.randbytes(4000))
        node.wait(lambda s: s["dropped"] > before, 20, "the overlong burst dropped")
        port.write(own)
        reply = port.read(13)
        assert reply[:3] == bytes((UNIT, 4, 8)), reply.hex()
        assert node.proc is not None and node.proc.poll() is None
    finally:
        port.close()
