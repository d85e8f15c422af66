"""The one exception provisioning raises for anything an operator must fix.

Its message is the whole diagnosis: the file, the field and the value at fault, and what to
do. It never carries private key material, so the CLI may print it as it is.
"""

from __future__ import annotations

from protocol.cli_error import UserError


class ProvisioningError(UserError):
    """A refused provisioning step; the message names file, field and value at fault."""


def shown(value: object, limit: int = 60) -> str:
    """A value quoted for an error message, cut short so a PEM blob cannot flood a terminal."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
