"""The one exception every way a packet, payload or command can fail to open raises.

It lives in its own module so that ``protocol.payload`` and ``protocol.envelope`` can share it
without importing each other; ``protocol.envelope`` re-exports everything here, and that is the
name callers should use.

``reason`` is one of the constants below (stable strings: the centre logs them as the security
event's ``reason`` field and counts them). The message names the byte offset or field at fault.
"""

from __future__ import annotations

from protocol.cli_error import UserError

MALFORMED = "malformed"  # cannot be parsed (truncated, bad magic, trailing bytes, bad field)
UNSUPPORTED_VERSION = "unsupported_version"  # header/payload/command version we do not speak
UNSUPPORTED_SUITE = "unsupported_suite"  # cipher-suite id we do not speak
TOO_LARGE = "too_large"  # longer than the maximum packet size
WRONG_CENTRE = "wrong_centre"  # sealed to another centre's X25519 key
UNKNOWN_STATION = "unknown_station"  # raised by the centre's key lookup
UNKNOWN_KEY = "unknown_key"  # station known, key id not (or command key id not ours)
REVOKED = "revoked"  # raised by the centre's key lookup for a revoked key
DECRYPT_FAILED = "decrypt_failed"  # HPKE open failed: tampered ciphertext or header (info)
BAD_SIGNATURE = "bad_signature"  # Ed25519 signature does not verify
HEADER_MISMATCH = "header_mismatch"  # header seq range disagrees with the sealed payload
REPLAY = "replay"  # every sequence number already stored / command counter not fresh
STALE_COMMAND = "stale_command"  # command older than the allowed age (or from the future)
WRONG_STATION = "wrong_station"  # command addressed to another station

REASONS = frozenset(
    {
        MALFORMED,
        UNSUPPORTED_VERSION,
        UNSUPPORTED_SUITE,
        TOO_LARGE,
        WRONG_CENTRE,
        UNKNOWN_STATION,
        UNKNOWN_KEY,
        REVOKED,
        DECRYPT_FAILED,
        BAD_SIGNATURE,
        HEADER_MISMATCH,
        REPLAY,
        STALE_COMMAND,
        WRONG_STATION,
    }
)


class EnvelopeError(UserError):
    """A packet, payload or command that must not be accepted; ``reason`` says why."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown envelope error reason {reason!r}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
