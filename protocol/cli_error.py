"""The one way a ``quantrac`` subcommand reports a failure it expected: one clean line, rc 1.

``quantrac centre init`` on an unreadable directory, ``provision import`` of a bad bundle, a
config file with a mistake: the operator gets ``quantrac <command>: error: <what>`` on stderr
(the message names the file and key; no traceback) and exit code 1. Every package's CLI
handlers (``centre``, ``provisioning``, ...) call :func:`fail`; it lives in ``protocol``
because that is the one package all of them may import, and it only writes to stderr (pure
otherwise, so it is on the ``sans-io`` list). Anything unexpected is the entry point's
(``edge_agent.daemon.cli.main``) last resort, which prints one ``quantrac: error:`` line.
"""

from __future__ import annotations

import sys


def fail(command: str, problem: BaseException | str) -> int:
    """Print ``quantrac <command>: error: <problem>`` on stderr; the exit code, 1."""
    print(f"quantrac {command}: error: {problem}", file=sys.stderr)
    return 1
