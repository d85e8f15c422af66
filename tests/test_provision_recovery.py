"""The installer's and the centre operator's ways out of every provisioning dead end, end to end
with the real commands: a lost bundle stick, a re-initialised station, `init --force` on an
enrolled station, a wrong station id typed at init, the confirm step, unquoted fingerprints,
a station id starting with '-', and provisioning run as the wrong user."""

from __future__ import annotations

import json
import os
import pty
import pwd
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_provision_helpers import packet, quantrac, snapshot

from centre import authority
from protocol.envelope import REVOKED, EnvelopeError
from provisioning import identity
from provisioning.keys import load_ed25519_private
from provisioning.signed import sign_document


class Site:
    """A centre and a station, each driven through `quantrac` only, and a USB stick dir."""

    def __init__(self, tmp_path: Path) -> None:
        self.centre_dir = tmp_path / "centre"
        self.state_dir = tmp_path / "station"
        self.stick = tmp_path / "usb"
        self.stick.mkdir()
        ok(quantrac("centre", "init", "--dir", self.centre_dir,
                    "--broker", "mqtt.centre.test:8883"))
        self.fp = ok(quantrac("centre", "fingerprint", "--dir", self.centre_dir)).strip()

    def station(self, *args: str | Path, stdin: int = subprocess.DEVNULL
                ) -> subprocess.CompletedProcess[str]:
        return quantrac("provision", *args, "--state-dir", self.state_dir, stdin=stdin)

    def centre(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return quantrac("centre", *args, "--dir", self.centre_dir)

    def enrolled(self, station_id: str = "HN-WW-001") -> identity.StationIdentity:
        ok(self.station("init", "--station-id", station_id, "--out", self.stick / "req.json"))
        ok(self.centre("enrol", self.stick / "req.json", "--out", self.stick / "bundle.json"))
        ok(self.station("import", self.stick / "bundle.json", "--centre-fingerprint", self.fp,
                        "--yes"))
        return identity.load(self.state_dir)

    def opens(self, ident: identity.StationIdentity, seq: int) -> None:
        """A packet from ``ident`` verifies at the centre (raises EnvelopeError if refused)."""
        centre = authority.load(self.centre_dir)
        with centre.registry() as registry:
            registry.open_packet(packet(ident, seq), centre.packet_private)

    def rows(self, table: str) -> int:
        with sqlite3.connect(self.centre_dir / "registry.sqlite") as db:
            count: int = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return count


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture
def on_a_terminal() -> Iterator[Callable[[str], int]]:
    """Pty slaves whose input already holds an answer: stdin for a command that asks."""
    fds: list[int] = []

    def terminal(answer: str) -> int:
        master, slave = pty.openpty()
        fds.extend((master, slave))
        os.write(master, answer.encode())  # the line discipline keeps it until it is read
        return slave

    yield terminal
    for fd in fds:
        os.close(fd)


def openssl_verify(centre_dir: Path, cert: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", "-crl_check", "-CAfile", centre_dir / "ca.crt", "-CRLfile",
         centre_dir / "crl.pem", cert], capture_output=True, text=True,
    )


# -- lost bundle stick ----------------------------------------------------------------------


def test_lost_stick_the_same_request_gets_its_bundle_again(tmp_path: Path) -> None:
    site = Site(tmp_path)
    ok(site.station("init", "--station-id", "HN-WW-001", "--out", site.stick / "req.json"))
    ok(site.centre("enrol", site.stick / "req.json", "--out", site.stick / "bundle.json"))
    first = json.loads((site.stick / "bundle.json").read_text())["body"]
    (site.stick / "bundle.json").unlink()  # the stick is lost on the way back

    out = ok(site.centre("enrol", site.stick / "req.json", "--out", site.stick / "bundle.json"))
    assert "already enrolled with this request: its bundle is written again" in out
    again = json.loads((site.stick / "bundle.json").read_text())["body"]
    assert again["station_key_id"] == first["station_key_id"]
    assert again["station_cert"] == first["station_cert"]  # the same certificate, by design
    assert again["expires"] == first["expires"]
    assert (site.rows("stations"), site.rows("station_keys"), site.rows("certificates")) == (
        1, 1, 1)

    ok(site.station("import", site.stick / "bundle.json", "--centre-fingerprint", site.fp,
                    "--yes"))
    site.opens(identity.load(site.state_dir), 1)


def test_the_nonce_guard_still_refuses_another_request_reusing_a_nonce(tmp_path: Path) -> None:
    site = Site(tmp_path)
    ok(site.station("init", "--station-id", "HN-WW-001", "--out", site.stick / "req.json"))
    ok(site.centre("enrol", site.stick / "req.json", "--out", site.stick / "bundle.json"))
    nonce = json.loads((site.stick / "req.json").read_text())["body"]["nonce"]

    def forged(station_id: str, where: Path) -> Path:
        """A real request of another device, its nonce replaced by the enrolled one's."""
        result = identity.init(where, station_id)
        body = json.loads(result.request)["body"]
        body["nonce"] = nonce
        key = load_ed25519_private(where / f"station-{result.key_id.hex()}.key")
        path = site.stick / f"forged-{station_id}.json"
        path.write_bytes(sign_document(body, [key]))
        return path

    other = site.centre("enrol", forged("HN-WW-002", tmp_path / "other"), "--out",
                        site.stick / "b2.json")
    assert other.returncode == 1
    assert "field body.nonce: this request was already used" in other.stderr
    same_id = site.centre("enrol", forged("HN-WW-001", tmp_path / "thief"), "--out",
                          site.stick / "b3.json")
    assert same_id.returncode == 1
    assert "is already enrolled with another key" in same_id.stderr
    assert not (site.stick / "b2.json").exists() and not (site.stick / "b3.json").exists()
    assert (site.rows("stations"), site.rows("station_keys")) == (1, 1)


# -- re-initialised station: the centre approves a re-key -----------------------------------


def test_reinitialised_station_rekey_after_checking_its_fingerprint(tmp_path: Path) -> None:
    site = Site(tmp_path)
    old = site.enrolled()
    site.opens(old, 1)

    out = ok(site.station("init", "--station-id", "HN-WW-001", "--out",
                          site.stick / "new-req.json", "--force", "--yes"))
    assert "`quantrac centre rekey new-req.json --out BUNDLE --station-fingerprint FP`" in out
    shown_fp = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("station key fingerprint:"))
    assert shown_fp == identity.show(site.state_dir)["station_key_fingerprint"]

    # The old way in is closed, and its refusal names the way out.
    refused = site.centre("enrol", site.stick / "new-req.json", "--out", site.stick / "b.json")
    assert refused.returncode == 1
    assert "already enrolled with another key" in refused.stderr
    assert "quantrac centre rekey" in refused.stderr and "--station-fingerprint" in refused.stderr

    # A fingerprint that does not match changes nothing and does not show the real one.
    wrong = site.centre("rekey", site.stick / "new-req.json", "--out", site.stick / "b.json",
                        "--station-fingerprint", "AAAA-AAAA-AAAA-AAAA-AAAA")
    assert wrong.returncode == 1
    assert "does not have the fingerprint typed (AAAA-AAAA-AAAA-AAAA-AAAA)" in wrong.stderr
    assert shown_fp not in wrong.stdout + wrong.stderr
    assert not (site.stick / "b.json").exists()
    site.opens(old, 2)  # still the enrolled key

    # The operator types what the installer reads out: lower case, spaces, no quotes.
    out = ok(site.centre("rekey", site.stick / "new-req.json", "--out", site.stick / "b.json",
                         "--station-fingerprint", *shown_fp.lower().split("-")))
    assert f"old keys revoked: {old.key_id.hex()}" in out
    with pytest.raises(EnvelopeError) as err:
        site.opens(old, 3)
    assert err.value.reason == REVOKED
    old_cert = next(site.state_dir.glob("replaced-*")) / "tls.crt"
    verdict = openssl_verify(site.centre_dir, old_cert)
    assert verdict.returncode != 0 and "certificate revoked" in verdict.stdout + verdict.stderr

    ok(site.station("import", site.stick / "b.json", "--centre-fingerprint", site.fp, "--yes"))
    new = identity.load(site.state_dir)
    assert new.station_id == "HN-WW-001" and new.key_id != old.key_id
    site.opens(new, 4)
    assert openssl_verify(site.centre_dir, new.cert_path).returncode == 0

    # Its stick lost too: the same re-key request gets the same answer, nothing revoked anew.
    out = ok(site.centre("rekey", site.stick / "new-req.json", "--out", site.stick / "b2.json",
                         "--station-fingerprint", shown_fp))
    assert "already re-keyed with this request" in out
    site.opens(new, 5)


def test_rekey_refuses_a_station_that_is_not_enrolled_or_revoked(tmp_path: Path) -> None:
    site = Site(tmp_path)
    out = ok(site.station("init", "--station-id", "HN-WW-001", "--out", site.stick / "req.json"))
    fp = next(line.split(":", 1)[1].strip() for line in out.splitlines()
              if line.startswith("station key fingerprint:"))
    r = site.centre("rekey", site.stick / "req.json", "--out", site.stick / "b.json",
                    "--station-fingerprint", fp)
    assert r.returncode == 1 and "is not enrolled" in r.stderr and "centre enrol" in r.stderr
    ok(site.centre("enrol", site.stick / "req.json", "--out", site.stick / "b.json"))
    ok(site.centre("revoke", "HN-WW-001"))
    ok(site.station("init", "--station-id", "HN-WW-001", "--out", site.stick / "req2.json",
                    "--force", "--yes"))
    fp2 = identity.show(site.state_dir)["station_key_fingerprint"]
    r = site.centre("rekey", site.stick / "req2.json", "--out", site.stick / "b2.json",
                    "--station-fingerprint", fp2)
    assert r.returncode == 1 and "is revoked" in r.stderr and "new station id" in r.stderr


# -- init --force on an enrolled station ------------------------------------------------------


def test_init_force_on_an_enrolled_station_says_what_it_strands_and_asks(
    tmp_path: Path, on_a_terminal: Callable[[str], int]
) -> None:
    site = Site(tmp_path)
    old = site.enrolled()
    before = snapshot(site.state_dir)
    again = ("init", "--station-id", "HN-WW-001", "--out", site.stick / "again.json", "--force")

    r = site.station(*again)  # no terminal, no --yes
    assert r.returncode == 1
    assert f"ENROLLED at centre {site.fp}" in r.stdout
    assert "refuses every packet" in r.stdout and "quantrac centre rekey" in r.stdout
    assert "refusing to replace the enrolled identity of station HN-WW-001" in r.stderr
    assert "pass --yes" in r.stderr
    assert snapshot(site.state_dir) == before and not (site.stick / "again.json").exists()

    r = site.station(*again, stdin=on_a_terminal("n\n"))
    assert r.returncode == 1 and "start a new identity? [y/N]" in r.stdout
    assert "not confirmed" in r.stderr
    assert snapshot(site.state_dir) == before

    r = site.station(*again, stdin=on_a_terminal("y\n"))
    assert r.returncode == 0, r.stderr
    assert identity.show(site.state_dir)["key_id"] != old.key_id.hex()
    assert (site.stick / "again.json").exists()


def test_init_force_before_enrolment_says_it_is_harmless(tmp_path: Path) -> None:
    site = Site(tmp_path)
    ok(site.station("init", "--station-id", "HN-WW-001", "--out", site.stick / "req.json"))
    r = site.station("init", "--station-id", "HN-WW-001", "--out", site.stick / "req.json",
                     "--force")
    assert r.returncode == 1
    assert "not enrolled here (no bundle imported): replacing it is harmless" in r.stdout
    ok(site.station("init", "--station-id", "HN-WW-001", "--out", site.stick / "req.json",
                    "--force", "--yes"))


# -- the confirm step, and a wrong station id typed at init ----------------------------------


def test_import_shows_what_it_installs_and_asks(
    tmp_path: Path, on_a_terminal: Callable[[str], int]
) -> None:
    site = Site(tmp_path)
    ok(site.station("init", "--station-id", "HN-WW-001", "--out", site.stick / "req.json"))
    ok(site.centre("enrol", site.stick / "req.json", "--out", site.stick / "bundle.json"))
    before = snapshot(site.state_dir)
    args = ("import", site.stick / "bundle.json", "--centre-fingerprint", site.fp)

    r = site.station(*args)
    assert r.returncode == 1
    for shown in ("station id:         HN-WW-001", f"centre fingerprint: {site.fp}",
                  "broker:             mqtt.centre.test:8883"):
        assert shown in r.stdout
    assert ("not installed: check the station id (HN-WW-001), the centre fingerprint "
            f"({site.fp}) and the broker (mqtt.centre.test:8883), then pass --yes") in r.stderr
    assert snapshot(site.state_dir) == before

    r = site.station(*args, stdin=on_a_terminal("\n"))  # Enter: the default is no
    assert r.returncode == 1 and "install? [y/N]" in r.stdout and "not confirmed" in r.stderr
    assert snapshot(site.state_dir) == before

    r = site.station(*args, stdin=on_a_terminal("y\n"))
    assert r.returncode == 0, r.stderr
    assert "bundle installed for station HN-WW-001" in r.stdout
    assert identity.show(site.state_dir)["enrolled"] is True


def test_a_wrong_station_id_typed_at_init_is_caught_and_recovered(tmp_path: Path) -> None:
    site = Site(tmp_path)
    config = tmp_path / "station.toml"
    config.write_text('[station]\nid = "hn-ww-002"\n')

    # With the config at hand, init refuses the typo outright.
    r = site.station("init", "--station-id", "hn-ww-001", "--out", site.stick / "req.json",
                     "--config", config)
    assert r.returncode == 1
    assert f"{config}: station.id: 'hn-ww-002', but --station-id is 'hn-ww-001'" in r.stderr
    assert not site.state_dir.exists() and not (site.stick / "req.json").exists()

    # Without it, the id is shown prominently, and the centre enrols the typo.
    out = ok(site.station("init", "--station-id", "hn-ww-001", "--out", site.stick / "req.json"))
    assert "station id:      hn-ww-001   <== check it" in out
    ok(site.centre("enrol", site.stick / "req.json", "--out", site.stick / "bundle.json"))
    before = snapshot(site.state_dir)

    # At import: the confirm step shows it, and with the config a mismatch is refused.
    r = site.station("import", site.stick / "bundle.json", "--centre-fingerprint", site.fp)
    assert r.returncode == 1 and "station id:         hn-ww-001" in r.stdout
    r = site.station("import", site.stick / "bundle.json", "--centre-fingerprint", site.fp,
                     "--config", config, "--yes")
    assert r.returncode == 1
    assert (f"{config}: station.id: 'hn-ww-002', but this station was initialised as "
            "'hn-ww-001'") in r.stderr
    assert "provision init --force --station-id hn-ww-002" in r.stderr
    assert snapshot(site.state_dir) == before

    # The way out: nothing was installed, so starting over is harmless.
    r = site.station("init", "--station-id", "hn-ww-002", "--out", site.stick / "req2.json",
                     "--force", "--yes")
    assert r.returncode == 0, r.stderr
    assert "replacing it is harmless" in r.stdout
    ok(site.centre("enrol", site.stick / "req2.json", "--out", site.stick / "bundle2.json"))
    ok(site.station("import", site.stick / "bundle2.json", "--centre-fingerprint", site.fp,
                    "--config", config, "--yes"))
    ident = identity.load(site.state_dir)
    assert ident.station_id == "hn-ww-002"
    site.opens(ident, 1)


# -- typing: fingerprints with spaces, station ids starting with '-' -------------------------


@pytest.mark.parametrize("bundle_first", [True, False])
def test_a_fingerprint_typed_with_spaces_unquoted_works(tmp_path: Path,
                                                        bundle_first: bool) -> None:
    site = Site(tmp_path)
    ok(site.station("init", "--station-id", "HN-WW-001", "--out", site.stick / "req.json"))
    ok(site.centre("enrol", site.stick / "req.json", "--out", site.stick / "bundle.json"))
    words = site.fp.lower().split("-")  # vxut k44z rfca dcnw ...: five argv words
    bundle = site.stick / "bundle.json"
    args: list[str | Path] = ([bundle, "--centre-fingerprint", *words] if bundle_first
            else ["--centre-fingerprint", *words, bundle])
    r = site.station("import", *args, "--yes")
    assert r.returncode == 0, r.stderr
    assert identity.show(site.state_dir)["centre_fingerprint"] == site.fp


@pytest.mark.parametrize("form", [["--station-id", "-x"], ["--station-id=-x"]])
def test_a_station_id_starting_with_a_dash_gets_the_rule(tmp_path: Path, form: list[str]) -> None:
    r = quantrac("provision", "init", *form, "--out", tmp_path / "req.json",
                 "--state-dir", tmp_path / "s")
    assert r.returncode != 0
    assert "expected one argument" not in r.stderr
    assert "--station-id" in r.stderr
    assert "letters, digits, '.', '_' or '-' (at most 32, starting with a letter or digit)" \
        in r.stderr
    assert not (tmp_path / "s").exists()


# -- which user runs provisioning --------------------------------------------------------------


def test_a_state_dir_of_another_user_says_to_run_as_that_user(tmp_path: Path) -> None:
    """As root (the CI): a dir chowned to uid 65534, the service user's stand-in. As anyone
    else: '/', which root owns."""
    if os.getuid() == 0:
        state_dir, owner = tmp_path / "quantrac-state", 65534
        state_dir.mkdir(mode=0o700)
        os.chown(state_dir, owner, owner)
    else:
        state_dir, owner = Path("/"), 0
    name = pwd.getpwuid(owner).pw_name
    r = quantrac("provision", "init", "--station-id", "HN-WW-001", "--out",
                 tmp_path / "req.json", "--state-dir", state_dir)
    assert r.returncode == 1
    assert f"belongs to user {name} (uid {owner})" in r.stderr
    assert f"`sudo -u {name} quantrac ...`" in r.stderr
    assert list(state_dir.iterdir()) == [] or state_dir == Path("/")


def test_a_stick_not_mounted_makes_nothing_and_names_the_folder(tmp_path: Path) -> None:
    site = Site(tmp_path)
    missing = tmp_path / "media" / "usb" / "req.json"
    r = site.station("init", "--station-id", "HN-WW-001", "--out", missing)
    assert r.returncode == 1
    assert f"folder {missing.parent} does not exist (is the USB stick mounted?)" in r.stderr
    assert ".tmp" not in r.stderr and not site.state_dir.exists()  # no keys left behind
    r = site.centre("enrol", tmp_path / "req.json", "--out", missing)
    assert r.returncode == 1 and f"folder {missing.parent} does not exist" in r.stderr


def test_request_stick_lost_before_the_centre_saw_it_or_after(tmp_path: Path) -> None:
    """The installer runs the same init again: the same request, not a second identity, so
    the centre enrols it once and answers a second copy with the same bundle."""
    site = Site(tmp_path)
    first = site.stick / "req.json"
    ok(site.station("init", "--station-id", "HN-WW-001", "--out", first))
    key_files = sorted(p.name for p in site.state_dir.glob("station-*.key"))
    again = site.stick / "again.json"
    out = ok(site.station("init", "--station-id", "HN-WW-001", "--out", again))
    assert "its enrolment request is written again" in out
    assert again.read_bytes() == first.read_bytes()
    assert sorted(p.name for p in site.state_dir.glob("station-*.key")) == key_files
    ok(site.centre("enrol", first, "--out", site.stick / "bundle.json"))
    out = ok(site.centre("enrol", again, "--out", site.stick / "bundle2.json"))
    assert "its bundle is written again" in out
    ok(site.station("import", site.stick / "bundle2.json", "--centre-fingerprint", site.fp,
                    "--yes"))
    site.opens(identity.load(site.state_dir), 1)
    # another id on the same dir is a decision, not a copy: the refusal says which id it holds
    r = site.station("init", "--station-id", "HN-WW-002", "--out", site.stick / "x.json")
    assert r.returncode == 1
    assert "holds station HN-WW-001's identity, enrolled at the centre" in r.stderr
