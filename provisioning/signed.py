"""Signed JSON documents: the enrolment request, the rotation request and the bundle.

A document file is ``{"body": {...}, "signatures": [{"alg", "key_id", "value"}, ...]}``,
pretty-printed so an installer can read it off a USB stick. Each signature is Ed25519 over
``CONTEXT + canonical(body)``, where canonical is JSON with sorted keys, no whitespace, ASCII
only and no floats. ``CONTEXT`` keeps these signatures from ever being valid as anything the
same key signs elsewhere (packets). The body names its own ``format``, so a request can never
pass for a bundle.

Parsing is strict (duplicate keys, floats, NaN, non-canonical base64 are refused) so that no
changed byte of the file can leave a verifying document with a different meaning.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.envelope import key_id
from provisioning.errors import ProvisioningError, shown

log = logging.getLogger("quantrac.provisioning.signed")

CONTEXT = b"quantrac-edge signed document v1\x00"
#: The deepest nesting a document may have. The real ones go four levels deep (the bundle's
#: ``body.centre.packet_key``); Python's json parser recurses once per level and a hostile or
#: damaged file of ``[[[[...`` would end in RecursionError ("maximum recursion depth exceeded",
#: no file, no offset), so deeper nesting is refused before parsing, naming the byte.
MAX_DEPTH = 16
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_STATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")  # a subset of the envelope's


def canonical(body: Mapping[str, Any]) -> bytes:
    """The exact bytes a signature covers."""
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def b64(data: bytes) -> str:
    """Standard padded base64, the only form ``Reader.b64`` accepts back."""
    return base64.b64encode(data).decode("ascii")


def iso(t: float) -> str:
    """UTC time as the documents carry it, to the second."""
    return datetime.fromtimestamp(int(t), UTC).strftime(TIME_FORMAT)


def sign_document(body: Mapping[str, Any], keys: Sequence[Ed25519PrivateKey]) -> bytes:
    """Render a document signed by each of ``keys``, ready to write to a file."""
    message = CONTEXT + canonical(body)
    signatures = [
        {"alg": "Ed25519", "key_id": key_id(k.public_key()).hex(), "value": b64(k.sign(message))}
        for k in keys
    ]
    text = json.dumps({"body": body, "signatures": signatures}, indent=2, sort_keys=True)
    return (text + "\n").encode("ascii")


@dataclass(frozen=True)
class Document:
    """A parsed, not yet verified, document: its body and its signatures by key id."""

    source: str
    body: Reader
    signatures: dict[bytes, bytes]

    def verify(self, public: Ed25519PublicKey, whose: str) -> None:
        """Refuse unless ``public`` signed this body (``whose`` names the key in the message)."""
        kid = key_id(public)
        signature = self.signatures.get(kid)
        if signature is None:
            have = ", ".join(k.hex() for k in self.signatures) or "none"
            raise ProvisioningError(
                f"{self.source}: field signatures: no signature by the {whose} "
                f"(key id {kid.hex()}); signatures present: {have}"
            )
        try:
            public.verify(signature, CONTEXT + canonical(self.body.data))
        except InvalidSignature:
            raise ProvisioningError(
                f"{self.source}: field signatures: the signature by the {whose} "
                f"(key id {kid.hex()}) does not match the content: the file was altered "
                "or was not signed by that key"
            ) from None
        log.debug("signature_verified", extra={"file": self.source, "key_id": kid.hex()})


def parse_document(data: bytes, source: str, expected_format: str) -> Document:
    """Parse a document file strictly; the error names the file and what is wrong."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ProvisioningError(
            f"{source}: byte {exc.start}: not ASCII ({data[exc.start]:#04x}); "
            "the file is damaged"
        ) from None
    too_deep = _too_deep(text, MAX_DEPTH)
    if too_deep is not None:
        raise ProvisioningError(
            f"{source}: byte {too_deep}: nested more than {MAX_DEPTH} levels deep, which no "
            "quantrac document is; the file is damaged or not a quantrac file"
        )
    try:
        doc = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_float,
        )
    except json.JSONDecodeError as exc:
        raise ProvisioningError(
            f"{source}: byte {exc.pos} (line {exc.lineno}): not valid JSON ({exc.msg}); "
            "the file is damaged"
        ) from None
    except ValueError as exc:
        raise ProvisioningError(f"{source}: {exc}; the file is damaged") from None
    top = Reader(doc, source, "")
    top.exact_keys({"body", "signatures"})
    body = top.obj("body")
    fmt = body.text("format")
    if fmt != expected_format:
        raise ProvisioningError(
            f"{source}: field body.format: {shown(fmt)} but a {expected_format!r} is needed here"
        )
    signatures: dict[bytes, bytes] = {}
    for i, entry in enumerate(top.items("signatures")):
        sig = Reader(entry, source, f"signatures[{i}].")
        sig.exact_keys({"alg", "key_id", "value"})
        if sig.text("alg") != "Ed25519":
            raise ProvisioningError(f"{source}: field signatures[{i}].alg: must be 'Ed25519'")
        kid = sig.hex("key_id", 8)
        if kid in signatures:
            raise ProvisioningError(f"{source}: field signatures[{i}]: key id repeated")
        signatures[kid] = sig.b64("value", 64)
    return Document(source, body, signatures)


def _too_deep(text: str, limit: int) -> int | None:
    """The offset of the first ``[`` or ``{`` that opens level ``limit + 1``, outside strings;
    None if the text never nests that deep. A linear scan, no recursion."""
    if text.count("[") + text.count("{") <= limit:  # the usual case: cannot be that deep
        return None
    depth = 0
    in_string = escaped = False
    for pos, c in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > limit:
                return pos
        elif c in "]}":
            depth -= 1
    return None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise ValueError(f"number {text!r} is not an integer")


class Reader:
    """Typed access to one JSON object; every refusal names file, field path and value."""

    def __init__(self, data: Any, source: str, prefix: str) -> None:
        if not isinstance(data, dict):
            where = prefix.rstrip(".") or "top level"
            raise ProvisioningError(f"{source}: field {where}: must be an object")
        self.data: dict[str, Any] = data
        self.source = source
        self.prefix = prefix

    def fail(self, name: str, problem: str) -> ProvisioningError:
        value = self.data.get(name)
        return ProvisioningError(
            f"{self.source}: field {self.prefix}{name}: {problem} (value {shown(value)})"
        )

    def _get(self, name: str) -> Any:
        if name not in self.data:
            raise ProvisioningError(f"{self.source}: field {self.prefix}{name}: missing")
        return self.data[name]

    def exact_keys(self, names: set[str]) -> None:
        extra = sorted(set(self.data) - names)
        if extra:
            raise ProvisioningError(
                f"{self.source}: field {self.prefix}{extra[0]}: not expected here"
            )
        for name in sorted(names):
            self._get(name)

    def obj(self, name: str) -> Reader:
        return Reader(self._get(name), self.source, f"{self.prefix}{name}.")

    def items(self, name: str) -> list[Any]:
        value = self._get(name)
        if not isinstance(value, list):
            raise self.fail(name, "must be a list")
        return value

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str):
            raise self.fail(name, "must be a string")
        return value

    def optional_str(self, name: str) -> str | None:
        if self._get(name) is None:
            return None
        return self.text(name)

    def integer(self, name: str, low: int, high: int) -> int:
        value = self._get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.fail(name, f"must be an integer from {low} to {high}")
        return value

    def station_id(self, name: str = "station_id") -> str:
        value = self.text(name)
        if not _STATION_ID.fullmatch(value):
            raise self.fail(name, "not a station id (letters, digits, . _ -; at most 32)")
        return value

    def hex(self, name: str, length: int) -> bytes:
        value = self.text(name)
        if len(value) != 2 * length or value != value.lower():
            raise self.fail(name, f"must be {2 * length} lower-case hex digits")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise self.fail(name, f"must be {2 * length} lower-case hex digits") from None

    def b64(self, name: str, length: int | None = None) -> bytes:
        value = self.text(name)
        try:
            raw = base64.b64decode(value, validate=True)
        except binascii.Error:
            raise self.fail(name, "not base64") from None
        if b64(raw) != value:  # refuse the unused-bit variants that decode to the same bytes
            raise self.fail(name, "not canonical base64")
        if length is not None and len(raw) != length:
            raise self.fail(name, f"must encode {length} bytes, not {len(raw)}")
        return raw

    def time(self, name: str) -> float:
        value = self.text(name)
        try:
            t = datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise self.fail(name, "not a UTC time like 2026-01-31T23:59:59Z") from None
        return t.timestamp()


#: The station id rule in words, for every message that refuses one.
STATION_ID_RULE = "letters, digits, '.', '_' or '-' (at most 32, starting with a letter or digit)"


def is_station_id(value: object) -> bool:
    """Whether ``value`` can be a station id: an MQTT topic level (no ``/``, ``+``, ``#``), a
    certificate CN and a file-name part, in ASCII. The one rule: provisioning, the bundle and
    the station config (``config check``) all ask this."""
    return isinstance(value, str) and _STATION_ID.fullmatch(value) is not None


def check_station_id(value: str, source: str) -> str:
    """Refuse a station id that could not be a topic level and a certificate CN."""
    if not is_station_id(value):
        raise ProvisioningError(f"{source}: station id {shown(value)}: use {STATION_ID_RULE}")
    return value
