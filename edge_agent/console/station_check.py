"""``config check``'s look at the station itself: will this config run *here*?

A config can read cleanly and still not run: the RS-485 adapter enumerated as ``ttyUSB1``,
not ``ttyUSB0``; the service user is not in the port's group; the cabinet's host name does
not resolve on the plant LAN; ``[station] id`` is not the id the station was provisioned
with, so the centre would refuse every packet; the state dir belongs to root. Each of those
surfaced only when the agent ran, one at a time, in the journal. Here they are found at once,
each with the bus or device it concerns and what to do about it.

This is I/O (it opens ports, resolves names, reads the state dir), so it is not in
``edge_agent.config``, which stays sans-IO; it sits in ``console`` with the other tools a
technician runs on the station (``diag``, ``status``), below ``daemon`` (which only parses the
command line) and above ``poll`` and ``config``, whose data it checks.

Errors and warnings. An installer on site expects a missing port to be an error; someone
checking the shipped examples on a laptop does not. The rule is: the machine is the station
when the service user exists (the package creates it), and there a port, host or state-dir
problem is an error. Where the user does not exist the same findings are warnings: the config
may be fine for the machine it is meant for. A wrong station id is an error everywhere: the
identity in the state dir is a fact, not a property of the machine. ``offline`` (checking a
file away from the station) skips this module altogether.

Whose access: the agent runs as the service user, so that is whose access counts. Run as root
(the usual way on site) the owner, group and mode bits are checked for that user (ACLs are not
read); run as anyone else only that user's own access can be known (``os.access``), and the
report says which user was checked.
"""

from __future__ import annotations

import errno
import grp
import ipaddress
import json
import os
import pwd
import socket
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import serial

from edge_agent.config.model import StationConfig
from edge_agent.console.control_client import agent_running
from protocol.config_file import shown
from protocol.safe_text import escape_controls
from provisioning import identity

DEFAULT_SERVICE_USER = "quantrac"
SYSTEMD_STATE_DIR = Path("/var/lib/quantrac")  # quantrac-agent.service: StateDirectory=quantrac
RESOLVE_TIMEOUT_S = 3.0  # a resolver that needs longer will fail the agent's connects too

ERROR, WARNING, OK = "error", "warning", "ok"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing checked: ``where`` (bus, device, path), what was found, what to do.

    ``on_station`` findings are errors only on the station itself (see the module doc);
    their level is settled by :func:`check_station`.
    """

    level: str
    where: str
    what: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.what}" + (f"; {self.fix}" if self.fix else "")


@dataclass(frozen=True, slots=True)
class Account:
    """The user whose access is checked, and how (``by_bits``: as root, for another user)."""

    name: str
    uid: int
    gids: frozenset[int]
    by_bits: bool


@dataclass(frozen=True, slots=True)
class Report:
    """What :func:`check_station` found, and the facts a reader needs to trust it."""

    findings: tuple[Finding, ...]
    checked_as: str      # "user 'quantrac' (by owner and mode bits, as root)"
    state_dir: Path
    state_dir_from: str  # "[agent] state_dir" or "--state-dir"
    on_station: bool

    @property
    def errors(self) -> int:
        return sum(f.level == ERROR for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.level == WARNING for f in self.findings)


def account(name: str) -> Account | None:
    """The service user as the kernel sees it (primary and supplementary groups), or None."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    return Account(name, pw.pw_uid, frozenset(gids), by_bits=True)


def _current() -> Account:
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return Account(name, uid, frozenset(os.getgroups()) | {os.getegid()}, by_bits=False)


def _may(path: Path, who: Account, want: int) -> bool:
    """May ``who`` do ``want`` (``os.R_OK | os.W_OK | os.X_OK`` bits) to ``path`` itself?"""
    if not who.by_bits:
        return os.access(path, want)
    if who.uid == 0:
        return True
    st = path.stat()
    if st.st_uid == who.uid:
        bits = st.st_mode >> 6
    elif st.st_gid in who.gids:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & want == want


def _unreachable(path: Path, who: Account) -> Path | None:
    """The first directory above ``path`` that ``who`` may not enter (os.access on ``path``
    already walks them for the current user)."""
    if not who.by_bits or who.uid == 0:
        return None
    for parent in reversed(path.parents):
        if not _may(parent, who, os.X_OK):
            return parent
    return None


def _owner(path: Path) -> str:
    st = path.stat()
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"mode {stat.S_IMODE(st.st_mode):04o}, owner {user}:{group}"


def _q(path: Path | str) -> str:
    return shown(str(path))


# --------------------------------------------------------------------------- serial ports


def check_port(bus: str, port: str, who: Account, control_socket: Path,
               devices: str = "") -> Finding:
    """Does ``port`` exist, and can ``who`` open it? A port the running agent holds is fine."""
    where = f"bus {shown(bus)} port {_q(port)}{devices}"
    path = Path(port)
    fix_name = ("plug the adapter in, or correct [[bus]] port (stable names are in "
                "/dev/serial/by-id/)")
    if not path.exists():
        what = "does not exist"
        if path.is_symlink():
            what = f"is a link to {_q(os.readlink(path))}, which does not exist"
        return Finding(ERROR, where, what, fix_name)
    hidden = _unreachable(path, who)
    if hidden is not None:
        return Finding(ERROR, where, f"user {shown(who.name)} cannot enter {_q(hidden)} "
                                     f"({_owner(hidden)})", "give it search (x) permission")
    if not _may(path, who, os.R_OK | os.W_OK):
        group = grp.getgrgid(path.stat().st_gid).gr_name
        return Finding(ERROR, where, f"user {shown(who.name)} may not open it ({_owner(path)})",
                       f"add the user to its group: usermod -aG {group} {who.name}")
    try:
        # exclusive: the lock the agent's transport takes (pyserial's flock), so a port the
        # agent holds answers "busy" here without being reconfigured under it
        serial.Serial(port, exclusive=True, timeout=0).close()
    except (serial.SerialException, OSError, ValueError) as exc:
        code = getattr(exc, "errno", None)
        if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY) or "lock" in str(exc):
            if agent_running(control_socket, timeout=1.0):
                return Finding(OK, where, "in use by the running agent "
                                          f"(it answers on {_q(control_socket)})")
            return Finding(ERROR, where, "in use by another program (the agent is not running)",
                           f"find it with: fuser -v {port} (ModemManager and a second "
                           "quantrac are the usual ones) and stop it")
        if code in (errno.EACCES, errno.EPERM):
            return Finding(ERROR, where, f"user {shown(who.name)} may not open it "
                                         f"({_owner(path)})", "add the user to its group")
        return Finding(ERROR, where, f"cannot be opened as a serial port "
                                     f"({escape_controls(str(exc))})", fix_name)
    return Finding(OK, where, "opens")


# --------------------------------------------------------------------------- host names


def resolve_problem(host: str, timeout: float = RESOLVE_TIMEOUT_S) -> str | None:
    """Why ``host`` does not resolve, or None if it does (a numeric address always does).

    ``getaddrinfo`` has no timeout of its own, and an unreachable resolver holds it for the
    resolver's own retries (tens of seconds); it runs on a daemon thread that is left behind
    when the deadline passes, so one bad host cannot stall the whole check.
    """
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    outcome: list[str | None] = []

    def look_up() -> None:
        try:
            socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            outcome.append(None)
        except (OSError, UnicodeError) as exc:
            outcome.append(getattr(exc, "strerror", None) or str(exc))

    worker = threading.Thread(target=look_up, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        return f"no answer from the resolver within {timeout:g} s"
    return outcome[0]


def check_host(where: str, host: str, devices: str = "") -> Finding:
    where = f"{where} host {shown(host)}{devices}"
    why = resolve_problem(host)
    if why is None:
        return Finding(OK, where, "resolves")
    return Finding(ERROR, where, f"does not resolve ({escape_controls(why)})",
                   "correct the name, use the device's IP address, or fix this machine's DNS "
                   "(/etc/resolv.conf, /etc/hosts)")


# --------------------------------------------------------------------------- state dir, identity


def check_state_dir(state_dir: Path, who: Account) -> Finding:
    """The agent keeps its outbox, spool and keys here: can ``who`` write it?"""
    where = f"state dir {_q(state_dir)}"
    fix = f"install -d -m 0700 -o {who.name} {state_dir}"
    if not state_dir.exists() and state_dir == SYSTEMD_STATE_DIR:
        return Finding(WARNING, where, "does not exist yet; the systemd unit creates it when "
                                       "the agent starts (StateDirectory=quantrac)")
    if not state_dir.exists():
        parent = next((p for p in state_dir.parents if p.exists()), Path("/"))
        if (parent.is_dir() and _unreachable(parent, who) is None
                and _may(parent, who, os.W_OK | os.X_OK)):
            return Finding(WARNING, where, f"does not exist yet; the agent (user "
                                           f"{shown(who.name)}) will create it", "")
        return Finding(ERROR, where, f"does not exist, and user {shown(who.name)} cannot "
                                     f"create it in {_q(parent)}", fix)
    if not state_dir.is_dir():
        return Finding(ERROR, where, "is not a directory", "correct [agent] state_dir")
    hidden = _unreachable(state_dir, who)
    if hidden is not None:
        return Finding(ERROR, where, f"user {shown(who.name)} cannot enter {_q(hidden)} "
                                     f"({_owner(hidden)})", "give it search (x) permission")
    if not _may(state_dir, who, os.R_OK | os.W_OK | os.X_OK):
        return Finding(ERROR, where, f"user {shown(who.name)} cannot write it "
                                     f"({_owner(state_dir)})",
                       f"chown {who.name}: {state_dir} && chmod 0700 {state_dir}")
    return Finding(OK, where, f"writable by user {shown(who.name)}")


def check_identity(station_id: str, state_dir: Path, uplink: bool) -> Finding:
    """Is the station provisioned in ``state_dir``, and under ``[station] id``?"""
    where = f"station id {shown(station_id)}"
    init = (f"quantrac provision init --station-id {station_id} --state-dir {state_dir} "
            "--out request.json")
    state = state_dir / "station.json"
    try:
        present = state.exists()
    except PermissionError:
        present = True  # found out below, with the user named
    if not present:
        elsewhere = identity.DEFAULT_STATE_DIR
        if elsewhere != state_dir and (elsewhere / "station.json").exists():
            return Finding(ERROR, where, f"no identity in {_q(state_dir)}, the state dir the "
                                         f"agent reads, but one in {_q(elsewhere)}",
                           f"set [agent] state_dir = \"{elsewhere}\", or provision with "
                           f"--state-dir {state_dir}")
        return Finding(WARNING if uplink else OK, where,
                       f"not provisioned yet (no identity in {_q(state_dir)})"
                       + ("; [uplink.mqtt] cannot send until it is" if uplink else ""),
                       init if uplink else "")
    # station.json itself, not identity.show(): only the id is wanted, and show() (rightly,
    # before it touches a key) refuses a dir not owned by the user running it, which is what
    # root on a station sees of the service user's dir
    try:
        data = json.loads(state.read_text(encoding="utf-8"))
    except PermissionError:
        return Finding(WARNING, where, f"cannot read the identity in {_q(state_dir)} as "
                                       f"user {shown(_current().name)}",
                       "run config check as root or as the service user")
    except (OSError, ValueError) as exc:
        return Finding(ERROR, where, f"{_q(state)} is unreadable ({escape_controls(str(exc))})",
                       "quantrac provision show names what is wrong with it")
    provisioned = data.get("station_id") if isinstance(data, dict) else None
    if not isinstance(provisioned, str) or data.get("format") != identity.STATE_FORMAT:
        return Finding(ERROR, where, f"{_q(state)} is not a {identity.STATE_FORMAT} file",
                       "quantrac provision show names what is wrong with it")
    if provisioned != station_id:
        return Finding(ERROR, where,
                       f"differs from the provisioned identity {shown(provisioned)} in "
                       f"{_q(state_dir)}; the centre knows this station by its identity",
                       f"set [station] id = \"{escape_controls(provisioned)}\" if the identity "
                       "is right; if the config is right, provision the station again under "
                       "its id (quantrac provision init --force) and enrol it at the centre")
    return Finding(OK, where, f"matches the identity in {_q(state_dir)}")


# --------------------------------------------------------------------------- all of it


def _devices_on(cfg: StationConfig, bus: str) -> str:
    """`` (devices 'cems', 'flow')``: what stops polling when this bus cannot be reached."""
    names = [d.name for b, d in cfg.poll.devices if b == bus]
    if not names:
        return ""
    return f" ({'device' if len(names) == 1 else 'devices'} {', '.join(map(shown, names))})"


def check_station(cfg: StationConfig, *, service_user: str = DEFAULT_SERVICE_USER,
                  state_dir: Path | None = None) -> Report:
    """Every station check for ``cfg``, each finding at its final level."""
    service = account(service_user)
    on_station = service is not None
    if os.geteuid() == 0 and service is not None:
        who = service
        checked_as = f"user {shown(who.name)} (by owner and mode bits, as root; ACLs not read)"
    else:
        who = _current()
        checked_as = f"user {shown(who.name)}"
        if service is None:
            checked_as += (f"; the service user {shown(service_user)} does not exist here, so "
                           "this is not the station: port, host and state dir problems are "
                           "warnings")
        elif who.name != service_user:
            checked_as += (f", not the service user {shown(service_user)} (run as root to "
                           "check for it)")
    found: list[Finding] = []
    for bus in cfg.poll.buses:
        devices = _devices_on(cfg, bus.name)
        if bus.serial is not None:
            found.append(check_port(bus.name, bus.serial.port, who, cfg.agent.control_socket,
                                    devices))
        elif bus.host is not None:
            found.append(check_host(f"bus {shown(bus.name)}", bus.host, devices))
    if cfg.circular10 is not None and cfg.circular10.host:
        found.append(check_host("uplink.circular10", cfg.circular10.host))
    chosen = state_dir if state_dir is not None else cfg.agent.state_dir
    found.append(check_state_dir(chosen, who))
    machine = len(found)
    found.append(check_identity(cfg.station.id, chosen, cfg.mqtt is not None))
    if not on_station:  # the machine's own findings cannot fail a config meant for another
        found[:machine] = [_softened(f) for f in found[:machine]]
    return Report(tuple(found), checked_as, chosen,
                  "--state-dir" if state_dir is not None else "[agent] state_dir", on_station)


def _softened(f: Finding) -> Finding:
    return Finding(WARNING, f.where, f.what, f.fix) if f.level == ERROR else f


def lines(report: Report) -> Iterable[str]:
    """The report as printed: whose access, then one line per finding, then the count."""
    yield f"station checks as {report.checked_as}; state dir from {report.state_dir_from}"
    for f in report.findings:
        yield str(f)
    yield f"{report.errors} error(s), {report.warnings} warning(s)"
