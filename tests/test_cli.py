"""The single `quantrac` entry point discovers every package's subcommands."""

import subprocess
import sys


def test_help_lists_every_subcommand() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edge_agent.daemon.cli", "--help"],
        capture_output=True, text=True, check=True,
    ).stdout
    for name in ("sim", "diag", "provision", "centre"):
        assert name in out


def test_logfmt_masks_secrets_and_quotes() -> None:
    import io
    import logging

    from edge_agent.daemon import logs

    buf = io.StringIO()
    logs.configure("INFO", stream=buf, timestamps=False)
    logging.getLogger("quantrac.test").warning(
        "key_loaded", extra={"private_key": "AAAA", "path": "/var/lib/q q"}
    )
    line = buf.getvalue().strip()
    assert line == (
        'level=warning logger=quantrac.test event=key_loaded private_key=*** path="/var/lib/q q"'
    )
