"""Key generation, PEM files, key ids and the human-comparable fingerprint.

Station and centre keys live in PKCS#8 PEM files (mode 0600, see ``securefs``); public keys
travel in the JSON documents as raw bytes in base64. Key ids are
``protocol.envelope.key_id`` (SHA-256 of the raw public key, first 8 bytes), so a key id
printed here is the one the centre sees in a packet header.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from provisioning.errors import ProvisioningError, shown

RAW = serialization.Encoding.Raw
RAW_PUB = serialization.PublicFormat.Raw

FINGERPRINT_CHARS = 20  # 100 bits of SHA-256: far beyond any second-preimage search
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key, as carried in requests and bundles."""
    return key.public_bytes(RAW, RAW_PUB)


def fingerprint(signing_key: Ed25519PublicKey) -> str:
    """The centre's fingerprint: groups of 4 base32 characters of SHA-256(raw signing key).

    Read aloud or compared by eye by the installer; base32 has no 0/O or 1/I to confuse.
    """
    text = base64.b32encode(hashlib.sha256(raw_public(signing_key)).digest()).decode("ascii")
    text = text[:FINGERPRINT_CHARS]
    return "-".join(text[i : i + 4] for i in range(0, FINGERPRINT_CHARS, 4))


def normalise_fingerprint(
    given: str,
    source: str = "--centre-fingerprint",
    read_from: str = "`quantrac centre fingerprint`",
    what: str = "centre fingerprint",
) -> str:
    """Accept what an installer types (any case, spaces or dashes) or refuse clearly."""
    compact = "".join(c for c in given.upper() if c not in " -_\t")
    if len(compact) != FINGERPRINT_CHARS or any(c not in _B32 for c in compact):
        raise ProvisioningError(
            f"{source}: {shown(given)} is not a {what} "
            f"({FINGERPRINT_CHARS} characters A-Z and 2-7 in groups of 4, e.g. ABCD-EFGH-...); "
            f"read it from {read_from}"
        )
    return "-".join(compact[i : i + 4] for i in range(0, FINGERPRINT_CHARS, 4))


def private_pem(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the file mode (0600) is the protection; a passphrase
    would have to sit on the same unattended device to be usable, so it would add nothing."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_ed25519_private(path: Path) -> Ed25519PrivateKey:
    """Load an Ed25519 private key; the error names the file, never its content."""
    key = _load_private(path)
    if not isinstance(key, Ed25519PrivateKey):
        raise ProvisioningError(f"{path}: not an Ed25519 private key ({type(key).__name__})")
    return key


def load_x25519_private(path: Path) -> X25519PrivateKey:
    """Load an X25519 private key; the error names the file, never its content."""
    key = _load_private(path)
    if not isinstance(key, X25519PrivateKey):
        raise ProvisioningError(f"{path}: not an X25519 private key ({type(key).__name__})")
    return key


def _load_private(path: Path) -> object:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProvisioningError(f"{path}: cannot read key file ({exc.strerror})") from None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # Deliberately not chained: the parser's message could quote key bytes.
        raise ProvisioningError(f"{path}: not a PEM private key") from None


def ed25519_public(raw: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from its 32 raw bytes."""
    return Ed25519PublicKey.from_public_bytes(raw)


def x25519_public(raw: bytes) -> X25519PublicKey:
    """An X25519 public key from its 32 raw bytes."""
    return X25519PublicKey.from_public_bytes(raw)
