"""`quantrac provision`: station identity, keys and enrolment (a thin layer over ``identity``).

Output is for an installer at a terminal: what was done, the ids and fingerprints to compare,
and the next step. Nothing secret is ever printed.

Two steps cannot be undone from the station alone, so they ask first (``install? [y/N]``):
``import`` (it decides which centre and broker this station trusts) and ``init --force`` (a
new key the centre does not know). Each shows what it is about to do; ``--yes`` answers for a
script that has checked the same. With no terminal to ask on and no ``--yes`` they refuse, and
say what to check: a station provisioned by a pipe that nobody read is the mistake to prevent.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from provisioning.bundle import Bundle
    from provisioning.identity import Existing

# What a fingerprint is typed with; a word with any other character (a '.', a '/') is a file.
_FINGERPRINT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz234567-_")


class _Parser(argparse.ArgumentParser):
    """argparse, except that a station id starting with '-' gets the station id rule.

    argparse reads ``--station-id -x`` as an option with no value and says "expected one
    argument", which tells an installer nothing about what an id may look like.
    """

    def error(self, message: str) -> NoReturn:
        if message.startswith("argument --station-id: expected one argument"):
            from provisioning.signed import STATION_ID_RULE

            message = (f"--station-id: needs a station id, and one cannot start with '-': use "
                       f"{STATION_ID_RULE}, e.g. HN-WW-001")
        super().error(message)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("provision", help="station identity, keys and enrolment")
    actions = parser.add_subparsers(dest="provision_command", metavar="ACTION",
                                    parser_class=_Parser)
    actions.required = True

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help)
        p.add_argument(
            "--state-dir", type=Path, default=None,
            help="station state dir (default $QUANTRAC_STATE_DIR or /var/lib/quantrac)",
        )
        return p

    def add_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, default=None,
                       help="the station config: its [station] id must be this station's")

    def add_yes(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--yes", action="store_true",
                       help=f"do not ask before {what} (for scripts that checked it)")

    p = add("init", "generate this station's keys and write its enrolment request")
    p.add_argument("--station-id", required=True)
    p.add_argument("--out", type=Path, required=True, help="enrolment request file to write")
    p.add_argument("--force", action="store_true",
                   help="start a new identity; the old files are kept in replaced-<time>/")
    add_config(p)
    add_yes(p, "replacing an identity (--force)")
    p.set_defaults(func=_init)

    p = add("import", "verify and install the bundle from the centre")
    p.add_argument("bundle", type=Path, nargs="?", metavar="BUNDLE")
    p.add_argument("--centre-fingerprint", required=True, nargs="+", metavar="FP",
                   help="as printed by `quantrac centre fingerprint` at the centre (spaces, "
                   "dashes and case do not matter)")
    add_config(p)
    add_yes(p, "installing")
    p.set_defaults(func=_import)

    p = add("show", "identity, fingerprints, certificate expiry")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--public-key", action="store_true",
                   help="print the station key's public half (PEM), for `quantrac verify "
                   "--public-key FILE`; compare its fingerprint with `provision show`")
    p.set_defaults(func=_show)

    p = add("rotate", "new signing key; writes the rotation request for the centre")
    p.add_argument("--out", type=Path, required=True, help="rotation request file to write")
    p.set_defaults(func=_rotate)


def _state_dir(args: argparse.Namespace) -> Path:
    from provisioning.identity import DEFAULT_STATE_DIR

    return args.state_dir if args.state_dir is not None else DEFAULT_STATE_DIR


def _ask(question: str, yes: bool, refusal: str) -> None:
    """Go on if ``--yes`` or the installer answers y at the terminal; else raise, nothing done.

    Only a terminal on stdin is asked: an answer piped in was not typed by someone who read
    the question.
    """
    from provisioning.errors import ProvisioningError

    if yes:
        return
    if not sys.stdin.isatty():
        raise ProvisioningError(f"{refusal} (no terminal to ask on)")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise ProvisioningError(f"{refusal}: not confirmed (answer y to go ahead)")


def _config_station_id(path: Path) -> str:
    """The ``[station] id`` of the station config, read the one way config files are read."""
    from protocol.config_file import read_toml
    from provisioning.errors import ProvisioningError, shown

    station = read_toml(path).get("station")
    value = station.get("id") if isinstance(station, dict) else None
    if not isinstance(value, str):
        raise ProvisioningError(
            f"{path}: station.id: {'missing' if value is None else shown(value)}; expected the "
            "station id as a string ([station] id = \"HN-WW-001\")"
        )
    return value


def _strand_warning(old: Existing, new_id: str) -> tuple[list[str], str]:
    """What ``init --force`` strands, and the one-line refusal when nobody can be asked."""
    who = f"station {old.station_id or '(unknown)'}, key {old.key_id or '(unknown)'}"
    lines = [f"this state dir holds an identity: {who}"]
    if old.enrolled:
        lines += [
            f"  ENROLLED at centre {old.centre_fingerprint}: the centre knows this key and no",
            "  other. A new identity strands the station: the centre refuses every packet",
            "  signed by the new key until its operator approves the re-key, after comparing",
            "  the station key fingerprint this command prints next:",
            "    centre: quantrac centre rekey REQUEST --out BUNDLE --station-fingerprint FP",
            "    here:   quantrac provision import BUNDLE --centre-fingerprint FP",
            "  Not what you need? Lost the bundle: the centre writes it again from the same",
            "  request (`quantrac centre enrol REQUEST`). A new key for a working station:",
            "  `quantrac provision rotate` (no re-key approval needed).",
        ]
        refusal = (f"refusing to replace the enrolled identity of station {old.station_id}: "
                   "the centre would refuse packets signed by a new key until its operator "
                   "approves a re-key (`quantrac centre rekey`); read the above, then pass "
                   "--yes to go ahead")
    else:
        lines += [
            "  not enrolled here (no bundle imported): replacing it is harmless, unless the",
            "  centre already enrolled its request; then the new request goes through",
            "  `quantrac centre rekey` (the operator compares fingerprints), not `centre enrol`.",
        ]
        refusal = (f"refusing to replace the identity of station {old.station_id} (not "
                   "enrolled here, so harmless unless the centre enrolled its request); read "
                   "the above, then pass --yes to go ahead")
    lines += [f"the old files are kept in replaced-<time>/; new station id: {new_id}"]
    return lines, refusal


def _init(args: argparse.Namespace) -> int:
    from provisioning import identity
    from provisioning.errors import ProvisioningError
    from provisioning.signed import check_station_id

    state_dir = _state_dir(args)
    station_id = check_station_id(args.station_id, "--station-id")
    if args.config is not None:
        configured = _config_station_id(args.config)
        if configured != station_id:
            raise ProvisioningError(
                f"{args.config}: station.id: {configured!r}, but --station-id is "
                f"{station_id!r}; nothing written. Give the id the station really has (the "
                "config's, if it is right)"
            )
    old = identity.existing(state_dir) if args.force else None
    if old is not None:
        lines, refusal = _strand_warning(old, station_id)
        print("\n".join(lines), flush=True)
        _ask("start a new identity?", args.yes, refusal)
    from provisioning.securefs import check_out_folder, write_public

    check_out_folder(args.out)
    result = identity.init(state_dir, station_id, force=args.force)
    write_public(args.out, result.request, "The keys are made: run the same command again "
                 "to write the same request")
    if result.written_again:
        print(f"this state dir already holds station {station_id}'s identity, not enrolled "
              "yet: its enrolment request is written again (the same keys; the centre "
              "answers it as the same request)")
    if result.moved_aside is not None:
        print(f"previous identity kept in {result.moved_aside}")
    print(f"station id:      {result.station_id}   <== check it against the station's label "
          "and config")
    print(f"station key id:  {result.key_id.hex()}")
    print(f"station key fingerprint: {result.key_fingerprint}")
    print(f"hardware serial: {result.hardware_serial or '(none found)'}")
    print(f"request written: {args.out}")
    print("wrong station id? Run this again now with --force and the right id: this request "
          "is not enrolled yet, so it is harmless")
    if old is not None and old.enrolled:
        print(f"next: at the centre, the operator compares the station key fingerprint above "
              f"and runs `quantrac centre rekey {args.out.name} --out BUNDLE "
              "--station-fingerprint FP`; then here, `quantrac provision import BUNDLE "
              "--centre-fingerprint FP`")
    else:
        print(f"next: at the centre, `quantrac centre enrol {args.out.name} --out BUNDLE`; "
              "then here, `quantrac provision import BUNDLE --centre-fingerprint FP`")
    return 0


def _bundle_and_fingerprint(args: argparse.Namespace) -> tuple[Path, str]:
    """BUNDLE and the fingerprint, typed in either order, the fingerprint with spaces or not.

    ``--centre-fingerprint`` takes several words (``vxut k44z rfca dcnw ...`` unquoted), so
    it also swallows a BUNDLE typed after it; the last word is taken back as BUNDLE when it
    holds a character no fingerprint has (a '.', a '/').
    """
    from protocol.cli_error import UsageError

    words = list(args.centre_fingerprint)
    bundle: Path | None = args.bundle
    if bundle is None:
        if len(words) > 1 and not set(words[-1]) <= _FINGERPRINT_CHARS:
            bundle = Path(words.pop())
        else:
            raise UsageError("BUNDLE: missing; `quantrac provision import BUNDLE "
                             "--centre-fingerprint FP`")
    return bundle, " ".join(words)


def _import(args: argparse.Namespace) -> int:
    from protocol.safe_text import escape_controls
    from provisioning import identity
    from provisioning.errors import ProvisioningError
    from provisioning.signed import iso

    path, typed = _bundle_and_fingerprint(args)
    configured = _config_station_id(args.config) if args.config is not None else None
    data = path.read_bytes()

    def confirm(bundle: Bundle) -> None:
        if configured is not None and configured != bundle.station_id:
            raise ProvisioningError(
                f"{args.config}: station.id: {configured!r}, but this station was initialised "
                f"as {bundle.station_id!r} (and {path} is for that id); nothing installed. If "
                f"the config is right, start over with its id (harmless, as nothing was "
                f"installed): `quantrac provision init --force --station-id {configured} --out "
                f"REQUEST`, and have the centre enrol the new request (and know that "
                f"{bundle.station_id!r} was enrolled by mistake)"
            )
        broker = escape_controls(f"{bundle.broker_host}:{bundle.broker_port}")
        print(f"bundle {path} verified; about to install:")
        print(f"  station id:         {bundle.station_id}   <== this station's?")
        print(f"  centre fingerprint: {bundle.fingerprint}")
        print(f"  broker:             {broker}", flush=True)
        _ask("install?", args.yes,
             f"not installed: check the station id ({bundle.station_id}), the centre "
             f"fingerprint ({bundle.fingerprint}) and the broker ({broker}), then pass --yes")

    bundle = identity.import_bundle(_state_dir(args), data, str(path), typed, confirm=confirm)
    print(f"bundle installed for station {bundle.station_id}")
    print(f"station key id:     {bundle.station_key_id.hex()}")
    print(f"certificate until:  {iso(bundle.station_cert.not_valid_after_utc.timestamp())}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from provisioning import identity

    if args.public_key:
        sys.stdout.write(identity.public_key_pem(_state_dir(args)).decode("ascii"))
        return 0
    info = identity.show(_state_dir(args))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for name, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"{name + ':':<26}{'-' if value is None else value}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from provisioning import identity
    from provisioning.securefs import check_out_folder, write_public

    check_out_folder(args.out)
    result = identity.rotate(_state_dir(args))
    write_public(args.out, result.request, "The new key is pending: run the same command "
                 "again to write the same request")
    if result.reused:
        print(f"a rotation to key {result.new_key_id.hex()} was already pending; "
              "its request is written again")
    print(f"current key id: {result.old_key_id.hex()} (still used until the bundle is imported)")
    print(f"new key id:     {result.new_key_id.hex()}")
    print(f"request written: {args.out}")
    print(f"next: at the centre, `quantrac centre rotate {args.out.name} --out BUNDLE`; then "
          "here, `quantrac provision import BUNDLE --centre-fingerprint FP`")
    return 0
