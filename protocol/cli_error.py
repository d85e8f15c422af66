"""The one way a ``quantrac`` subcommand reports a failure it expected: one clean line, rc 1.

``quantrac centre init`` on an unreadable directory, ``provision import`` of a bad bundle, a
config file with a mistake: the operator gets ``quantrac <command>: error: <what>`` on stderr
(the message names the file and key; no traceback) and exit code 1. A handler does not catch
these itself: it lets them rise, and the entry point (``edge_agent.daemon.cli.main``) catches
:data:`USER_ERRORS` once and calls :func:`fail`. A handler catches only to add context (the
file it was reading, say) and then raises a :class:`CommandError` saying so. Every other
exception is a bug and keeps its traceback.

The project's exceptions for "an operator must fix this" (``ConfigError``,
``ProvisioningError``, ``EnvelopeError``, the centre store's ``NotACentreStoreError``, the
control client's ``ControlError``) derive from :class:`UserError`. It lives in ``protocol``
because that is the one package all of them may import, and this module only writes to stderr
(pure otherwise, so it is on the ``sans-io`` list).
"""

from __future__ import annotations

import sys

from protocol.safe_text import escape_controls


class UserError(Exception):
    """A failure the operator can act on; its message is the whole diagnosis."""

    exit_code = 1


class CommandError(UserError):
    """A handler's failure with its context (``exit_code`` when it is not 1)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(UserError, ValueError):
    """A value given on the command line (or by a caller) that cannot be used; a ValueError."""


#: what ``quantrac`` reports as one line per message line instead of a traceback: the
#: project's errors and the operating system's (a missing file, a refused permission)
USER_ERRORS: tuple[type[Exception], ...] = (UserError, OSError)


def fail(command: str, problem: BaseException | str) -> int:
    """Print ``quantrac <command>: error: <problem>`` on stderr; the exit code, 1 by default.

    Each line of the message gets the prefix, escaped: a message may carry a string from a file,
    a peer or a device, and a control character in it must not reach the terminal.
    """
    for line in str(problem).split("\n"):
        print(f"quantrac {command}: error: {escape_controls(line)}", file=sys.stderr)
    return problem.exit_code if isinstance(problem, UserError) else 1
