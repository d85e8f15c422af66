"""quantrac verify: an untouched signed export is accepted (exit 0); one changed value, one
removed record, one inserted record, one re-ordered file and a replaced key are each found and
named by file and line; fuzzed exports never crash it."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from buffer import Store
from buffer.chain import Signer
from edge_agent.evidence import manifest as mf
from edge_agent.evidence.cli import read_export
from edge_agent.evidence.export import export
from edge_agent.evidence.verify import (
    ALTERED,
    INSERTED,
    KEY,
    REMOVED,
    REORDERED,
    Report,
    verify,
)
from protocol.model import Record, Status

T0 = 1_763_900_000
STATION_ID = "HCM-WW-0001"
KEY_A = Ed25519PrivateKey.generate()


def rec(i: int, channel: str) -> Record:
    return Record(channel, T0 + 300 * i, T0 + 300 * (i + 1), 7.0 + i / 100, 6.9, 7.3, 0.01,
                  30, 30, True, Status.MEASURING, "mg/L")


def make_export(tmp: Path, key: Ed25519PrivateKey = KEY_A) -> Path:
    """A signed export of 20 windows x 3 channels, with a checkpoint in the middle."""
    signer = Signer(STATION_ID, key)
    store = Store(tmp / "outbox.sqlite", lambda: T0 + 86400.0, signer=signer)
    for i in range(10):
        store.append([rec(i, c) for c in ("COD", "TSS", "pH")])
    store.checkpoint()
    for i in range(10, 20):
        store.append([rec(i, c) for c in ("COD", "TSS", "pH")])
    store.checkpoint()
    out = tmp / "export"
    export(store, out, T0, T0 + 20 * 300, formats=["csv"], signer=signer,
           period=("a", "b"), clock=lambda: T0 + 86400.0)
    store.close()
    return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_export(tmp_path_factory.mktemp("pristine"))


def pem(key: Ed25519PrivateKey, path: Path) -> Path:
    path.write_bytes(key.public_key().public_bytes(Encoding.PEM,
                                                   PublicFormat.SubjectPublicKeyInfo))
    return path


def key_a(station_id: str, kid: bytes) -> object:
    from protocol.envelope import key_id
    return KEY_A.public_key() if kid == key_id(KEY_A.public_key()) else None


def check(files: dict[str, bytes]) -> Report:
    return verify(files, key_a)  # type: ignore[arg-type]


def kinds(report: Report) -> list[tuple[str, int | None, str]]:
    return [(f.path, f.line, f.kind) for f in report.findings]


def lines(files: dict[str, bytes]) -> list[bytes]:
    return files[mf.RECORDS].splitlines(keepends=True)


def test_an_untouched_export_is_authentic(pristine: Path) -> None:
    report = check(read_export(pristine))
    assert report.ok, kinds(report)
    assert report.authentic_records == 60 and report.authentic_files == 2
    assert "3 signed checkpoint(s) agree with the manifest" in report.notes  # genesis, 2 hourly


def test_one_changed_value_is_named_by_its_line(pristine: Path) -> None:
    files = read_export(pristine)
    rows = lines(files)
    rows[22] = rows[22].replace(b",7.07,", b",7.08,", 1)  # line 23: chain 22, COD window 7
    assert b",7.08," in rows[22]
    files[mf.RECORDS] = b"".join(rows)
    report = check(files)
    assert (mf.RECORDS, 23, ALTERED) in kinds(report)
    assert [f for f in report.findings if f.line is not None] == \
        [f for f in report.findings if f.line == 23]  # only that line
    assert report.authentic_records == 59


def test_one_removed_record_is_found(pristine: Path) -> None:
    files = read_export(pristine)
    rows = lines(files)
    del rows[30]  # line 31: chain 30
    files[mf.RECORDS] = b"".join(rows)
    report = check(files)
    assert (mf.RECORDS, None, REMOVED) in kinds(report)
    assert any("(chain 30) is missing" in f.text for f in report.findings)
    # the record after it still checks: its predecessor's link is in the signed manifest
    assert report.authentic_records == 59


def test_one_inserted_record_is_found(pristine: Path) -> None:
    files = read_export(pristine)
    rows = lines(files)
    forged = mf.csv_line(61, 61, rec(20, "COD"))
    rows.insert(5, forged)
    files[mf.RECORDS] = b"".join(rows)
    report = check(files)
    assert (mf.RECORDS, 6, INSERTED) in kinds(report)
    assert report.authentic_records == 60


def test_a_re_ordered_file_is_found(pristine: Path) -> None:
    files = read_export(pristine)
    rows = lines(files)
    rows[10], rows[11] = rows[11], rows[10]
    files[mf.RECORDS] = b"".join(rows)
    report = check(files)
    assert (mf.RECORDS, 12, REORDERED) in kinds(report)
    # a file put under another file's name: named as such
    files = read_export(pristine)
    files[mf.CHECKPOINTS] = files[mf.RECORDS]
    assert (mf.CHECKPOINTS, None, REORDERED) in kinds(check(files))


def test_a_replaced_key_is_found(pristine: Path, tmp_path: Path) -> None:
    # someone re-makes the manifest (here: over a changed record) and signs it with a key of
    # their own, shipping that key's public half in the export
    files = read_export(pristine)
    other = Ed25519PrivateKey.generate()
    files[mf.SIGNATURE] = base64.b64encode(other.sign(mf.MANIFEST_CONTEXT +
                                                      files[mf.MANIFEST])) + b"\n"
    pem(other, tmp_path / "other.pub")
    files[mf.PUBLIC_KEY] = (tmp_path / "other.pub").read_bytes()
    report = check(files)
    assert (mf.PUBLIC_KEY, None, KEY) in kinds(report)
    assert (mf.SIGNATURE, None, KEY) in kinds(report)
    # without a trusted key the export's own key is used: the signature then holds, but the
    # checkpoints (signed by the station's key when the records were stored) do not
    alone = verify(files, None)
    assert not alone.ok and any(f.path == mf.CHECKPOINTS and f.kind == KEY
                                for f in alone.findings)


def run_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", "verify", *args],
                          capture_output=True, text=True, timeout=120)


def test_the_command_exits_0_only_for_an_untouched_export(pristine: Path,
                                                          tmp_path: Path) -> None:
    key = pem(KEY_A, tmp_path / "station.pub")
    ok = run_verify(str(pristine), "--public-key", str(key))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "AUTHENTIC" in ok.stdout and ok.stderr == ""
    bad = tmp_path / "bad"
    shutil.copytree(pristine, bad)
    text = (bad / mf.RECORDS).read_bytes().replace(b",7.07,", b",9.07,", 1)
    (bad / mf.RECORDS).write_bytes(text)
    got = run_verify(str(bad), "--public-key", str(key))
    assert got.returncode == 1 and "records.csv:23: altered" in got.stdout
    wrong = pem(Ed25519PrivateKey.generate(), tmp_path / "wrong.pub")
    got = run_verify(str(pristine), "--public-key", str(wrong))
    assert got.returncode == 1 and "replaced key" in got.stdout


def test_the_registry_of_the_centre_is_a_key_source(pristine: Path, tmp_path: Path) -> None:
    import sqlite3

    from centre.registry import Registry
    from protocol.envelope import key_id

    db = tmp_path / "centre.db"
    Registry(db).close()  # the centre's own schema
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO stations (station_id, status, enrolled_at) VALUES (?, 'active', 0)",
                 (STATION_ID,))
    conn.execute("INSERT INTO station_keys (station_id, key_id, public_key, state, added_at) "
                 "VALUES (?, ?, ?, 'active', 0)",
                 (STATION_ID, key_id(KEY_A.public_key()).hex(),
                  KEY_A.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)))
    conn.commit()
    conn.close()
    with Registry(db) as reg:  # written as the centre reads it
        assert reg.lookup_station_key(STATION_ID, key_id(KEY_A.public_key()))
    got = run_verify(str(pristine), "--registry", str(db))
    assert got.returncode == 0, got.stdout + got.stderr
    other = make_export(tmp_path, Ed25519PrivateKey.generate())
    got = run_verify(str(other), "--registry", str(db))
    assert got.returncode == 1 and "not a key of station" in got.stdout


@st.composite
def damage(draw: st.DrawFn, names: list[str]) -> list[tuple[str, str, int, int]]:
    ops = []
    for _ in range(draw(st.integers(1, 4))):
        ops.append((draw(st.sampled_from(["flip", "truncate", "delete", "insert"])),
                    draw(st.sampled_from(names)), draw(st.integers(0, 1 << 20)),
                    draw(st.integers(0, 255))))
    return ops


NAMES = [mf.MANIFEST, mf.SIGNATURE, mf.PUBLIC_KEY, mf.CHECKPOINTS, mf.RECORDS]


# FUZZ_EXAMPLES=20000 for a longer hunt by hand; CI runs the default
@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=damage(NAMES))
@example(ops=[("flip", mf.PUBLIC_KEY, 6815, 0)])  # found: a key OID no one knows crashed it
def test_fuzzed_exports_never_crash_it(pristine: Path, ops: list[tuple[str, str, int, int]]
                                       ) -> None:
    files = read_export(pristine)
    original = dict(files)
    for op, name, pos, byte in ops:
        data = files.get(name)
        if data is None:
            continue
        if op == "delete":
            del files[name]
        elif op == "truncate":
            files[name] = data[:pos % (len(data) + 1)]
        elif op == "insert":
            i = pos % (len(data) + 1)
            files[name] = data[:i] + bytes([byte]) + data[i:]
        elif data:
            i = pos % len(data)
            files[name] = data[:i] + bytes([data[i] ^ (byte or 1)]) + data[i + 1:]
    report = check(files)  # must not raise
    if files != original:
        assert not report.ok or _same_meaning(files, original)


def _same_meaning(files: dict[str, bytes], original: dict[str, bytes]) -> bool:
    """A change verify may accept: whitespace around the base64 signature, or station.pub
    gone or padded (the trusted key comes from outside the export; the shipped one is only
    compared with it)."""
    rest = set(original) - {mf.PUBLIC_KEY}
    return rest <= set(files) and all(files[k].strip() == original[k].strip() for k in rest)


def test_verify_without_a_trusted_key_says_consistent_not_authentic(pristine: Path,
                                                                   tmp_path: Path) -> None:
    # whoever rewrites an export can sign it with their own key and ship that key: an export
    # made from scratch by another key is as consistent as the station's own
    forged = make_export(tmp_path, Ed25519PrivateKey.generate())
    for export_dir in (pristine, forged):
        got = run_verify(str(export_dir))
        assert got.returncode == 4, got.stdout + got.stderr
        assert "consistent, but NOT authenticated: give --public-key (from the station or " \
            "the centre) or --registry" in got.stdout
        assert "AUTHENTIC:" not in got.stdout and "FAIL" not in got.stdout
    assert not verify(read_export(pristine), None).authentic
    assert verify(read_export(pristine), key_a).authentic  # type: ignore[arg-type]
    got = run_verify(str(forged), "--public-key", str(pem(KEY_A, tmp_path / "a.pub")))
    assert got.returncode == 1 and "NOT AUTHENTIC" in got.stdout


def _deleted_export(tmp: Path, first_chain: int, last_chain: int, *,
                    signed_genesis: bool = True, period: tuple[int, int] = (0, 20)) -> Path:
    """A signed export after the records at chain positions first..last were deleted from
    the outbox behind its back (as a full disk gives them up: no checkpoint)."""
    import sqlite3

    signer = Signer(STATION_ID, KEY_A)
    path = tmp / "outbox.sqlite"
    store = Store(path, lambda: T0 + 86400.0, signer=signer if signed_genesis else None)
    for i in range(10):
        store.append([rec(i, c) for c in ("COD", "TSS", "pH")])
    store.close()
    store = Store(path, lambda: T0 + 86400.0, signer=signer)
    for i in range(10, 20):
        store.append([rec(i, c) for c in ("COD", "TSS", "pH")])
    store.checkpoint()
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM records WHERE chain_n BETWEEN ? AND ?",
                     (first_chain, last_chain))
    out = tmp / "export"
    with Store(path, lambda: T0 + 86400.0, signer=signer) as store:
        export(store, out, T0 + 300 * period[0], T0 + 300 * period[1], formats=["csv"],
               signer=signer, clock=lambda: T0 + 86400.0)
    return out


def test_records_deleted_without_a_checkpoint_are_told_in_words(tmp_path: Path) -> None:
    from edge_agent.evidence.verify import UNCHECKABLE

    report = check(read_export(_deleted_export(tmp_path, 10, 12)))
    gone = [f for f in report.findings if f.kind == REMOVED]
    assert len(gone) == 1 and gone[0].text.startswith(
        "3 record(s), chain 10..12: no longer on the station, and no checkpoint signed at the "
        "time says what they were")
    assert "given up when the station's disk was full, or deleted by someone" in gone[0].text
    # the record after them is not called altered: its predecessor's link is gone with them
    after = [f for f in report.findings if f.line is not None]
    assert [(f.line, f.kind) for f in after] == [(11, UNCHECKABLE)]  # chain 13: after 1..9
    assert "(chain 13)" in after[0].text and "deleted on the station with no signed " \
        "checkpoint" in after[0].text
    assert report.authentic_records == 60 - 3 - 1


def test_an_export_whose_first_record_lost_its_predecessor_says_so(tmp_path: Path) -> None:
    from edge_agent.evidence.verify import UNCHECKABLE

    # no signed checkpoint before the period (the first records were stored before the
    # station had a key), and the record just before it is gone: nothing holds its link
    out = _deleted_export(tmp_path, 25, 30, signed_genesis=False, period=(10, 20))
    files = read_export(out)
    assert mf.Manifest.from_bytes(files[mf.MANIFEST]).anchor == b""
    report = check(files)
    assert [(f.path, f.line, f.kind) for f in report.findings] == [
        (mf.RECORDS, 2, UNCHECKABLE)]
    assert "(chain 31)" in report.findings[0].text and "the records before it (up to chain " \
        "30) are no longer on the station" in report.findings[0].text
    assert report.authentic_records == 29
