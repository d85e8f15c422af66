"""Session-wide test setup shared by every package. Keep it minimal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.pg_server import PgServer


@pytest.fixture(scope="session", autouse=True)
def numba_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compiled numba kernels go to a temporary state directory, never beside the source."""
    from edge_agent.averaging import configure_cache

    return configure_cache(tmp_path_factory.mktemp("state"))


@pytest.fixture(autouse=True)
def no_log_handler_outlives_its_test() -> Iterator[None]:
    """A test that runs a command in-process (``cli.main``) leaves its log handler on the root
    logger, writing to that test's captured stderr; pytest closes that stream after the test,
    and a thread of a later test (pyftpdlib's server logs every session) then printed
    ``--- Logging error --- ValueError: I/O operation on closed file``. The handlers a test
    added go with it; the root level is left as it was set."""
    import logging

    root = logging.getLogger()
    before = list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One real PostgreSQL server for the whole session (``tests/pg_server.py``)."""
    from tests.pg_server import PgServer

    server = PgServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a centre record store test opens its store, once per backend: a new SQLite file,
    or the session's PostgreSQL test database emptied (a ``postgresql://`` URL)."""
    if request.param == "sqlite":
        return tmp_path / "records.sqlite"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.fresh()
