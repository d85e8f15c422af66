"""A real PostgreSQL server for tests: Debian's ``initdb`` and ``pg_ctl`` in a temporary dir.

Started once per test session (``pg_server`` in ``tests/conftest.py``): initdb and a start
take a couple of seconds, which a test each would multiply. Each store test gets the one test
database emptied (``fresh``: TRUNCATE, a few milliseconds) rather than a database of its own.

The server listens on a free loopback port and its unix socket lives in its own directory. It
runs without fsync (a test server's crash loses nothing we need) and with password
(scram-sha-256) authentication on TCP, so every store test connects the way a centre does,
with a password in the URL that no message may show. PostgreSQL refuses to run as root: when
the tests run as root, the server runs as Debian's ``postgres`` user (``runuser``), in a
directory of its own outside pytest's root-only temp dir.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import psycopg

from tests.mosquitto import free_port

INITDB = "initdb"
PG_CTL = "pg_ctl"
RUNUSER = "runuser"
SERVER_USER = "postgres"  # created by Debian's postgresql package
SUPERUSER = "quantrac"
DATABASE = "centre_test"


def pg_program(name: str) -> str:
    """``name`` on PATH, else where Debian installs it (/usr/lib/postgresql/<ver>/bin)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if not candidates:
        raise FileNotFoundError(f"{name}: not on PATH nor in /usr/lib/postgresql/*/bin "
                                "(make deb installs postgresql)")
    return str(candidates[-1])


def execute_sql(location: Path | str, sql: str, params: Sequence[object] = ()) -> None:
    """One statement (``?`` placeholders) on the store at ``location``, behind the store's
    back: what a test does to plant a row the store itself would never write."""
    if isinstance(location, Path):
        with contextlib.closing(sqlite3.connect(location)) as db, db:
            db.execute(sql, params)
        return
    with psycopg.connect(location, autocommit=True) as conn:
        conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]


class PgServer:
    """One PostgreSQL server with a superuser ``quantrac`` (password) and a test database."""

    def __init__(self) -> None:
        self.as_root = os.getuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="quantrac-pg-"))
        self.data = self.root / "data"
        self.password = "pw-" + secrets.token_hex(8)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.log = self.root / "server.log"
        if self.as_root:
            ids = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, ids.pw_uid, ids.pw_gid)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._own(pwfile)
        self._run(pg_program(INITDB), "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
                  "-E", "UTF8", "--locale=C")
        pwfile.unlink()
        self.start()
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        self._migrated = False

    def _own(self, path: Path) -> None:
        if self.as_root:
            ids = pwd.getpwnam(SERVER_USER)
            os.chown(path, ids.pw_uid, ids.pw_gid)

    def _run(self, *argv: str) -> None:
        cmd = [RUNUSER, "-u", SERVER_USER, "--", *argv] if self.as_root else list(argv)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {done.stderr}{done.stdout}{log}")

    def start(self) -> None:
        """Start the server; pg_ctl -w returns once it accepts connections."""
        opts = (f"-c listen_addresses={self.host} -p {self.port} -k {self.root} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(pg_program(PG_CTL), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", "60", "-o", opts, "start")

    def stop(self) -> None:
        self._run(pg_program(PG_CTL), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def dsn(self, database: str = DATABASE, password: str | None = None) -> str:
        """A ``postgresql://`` URL of ``database`` over TCP with the superuser's password."""
        pw = self.password if password is None else password
        return f"postgresql://{SUPERUSER}:{pw}@{self.host}:{self.port}/{database}"

    def admin(self, sql: str, database: str = DATABASE) -> list[tuple[object, ...]]:
        """Run one statement as the superuser (autocommit); its rows."""
        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            cur = conn.execute(sql)  # type: ignore[call-overload]
            return list(cur.fetchall()) if cur.description is not None else []

    def fresh(self) -> str:
        """The test database, its store schema in place and every table but the schema's
        version emptied (whatever tables the migrations made); its URL."""
        if not self._migrated:
            from centre.store import CentreStore

            CentreStore(self.dsn()).close()
            self._migrated = True
        # a store an earlier test left open (a receiver process killed mid-transaction, a
        # connection not closed) would hold locks TRUNCATE waits for: end those sessions
        self.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   f"WHERE datname = '{DATABASE}' AND pid <> pg_backend_pid()")
        tables = [str(t) for (t,) in self.admin(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename <> 'schema_version'")]
        self.admin(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
        return self.dsn()

    def close(self) -> None:
        try:
            self._run(pg_program(PG_CTL), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
