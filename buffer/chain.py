"""The evidence chain over the outbox's records, and the signed checkpoints of its head.

Sans-IO: bytes, records and keys in, bytes out; the store (``buffer.store``) keeps the links
and checkpoints, ``edge_agent.evidence`` exports and verifies them.

**Links.** Every record the outbox commits gets the next chain position ``n`` (1, 2, ...: the
order the outbox received the records, which is not always seq order: ``Store.recover``
imports old records under their old seqs) and the link::

    link_n = BLAKE2b-256(person=PERSON, link_{n-1} || n || canonical(seq_n, record_n))

with ``link_0 = GENESIS`` (32 zero bytes). ``canonical`` is ``buffer.rows.record_canonical``,
the same bytes the record's checksum covers. Why each part:

* BLAKE2b: already the outbox's checksum hash, fast in pure CPython (one call per record keeps
  the append within its bench target), 256-bit output so a forged record needs a second
  preimage of 256 bits, not a 128-bit birthday.
* the ``person`` string is domain separation: no other hash the project computes (the record
  checksum, key ids, the packet signature) can be presented as a link, or a link as one of
  them, because their inputs are prefixed differently.
* ``n`` in the input binds a record to its position: the same record moved elsewhere, or a
  record removed and the rest shifted down, changes every link from there on.

Changing, removing, inserting or re-ordering a record changes its link and every later one, so
one trusted link (a signed checkpoint) vouches for everything before it.

**Checkpoints.** The station signs ``CHECKPOINT_CONTEXT || station_id || n || seq || link ||
at`` with its Ed25519 key (the packet key, so the centre's registry already knows it). The
context string keeps a checkpoint signature from ever being valid as a packet or command
signature, and the station id keeps one station's checkpoint from passing as another's.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from buffer.rows import record_canonical
from protocol.envelope import key_id
from protocol.model import Record

PERSON = b"quantrac-chain1"  # BLAKE2b personalisation: at most 16 bytes
GENESIS = bytes(32)
LINK_SIZE = 32
CHECKPOINT_CONTEXT = b"quantrac-edge/checkpoint/v1\x00"
_POS = struct.Struct(">q")
_LINK_BASE = hashlib.blake2b(digest_size=LINK_SIZE, person=PERSON)
_CHECKPOINT = struct.Struct(">qqd")  # n, seq, at (UTC epoch seconds)

#: why a checkpoint was made
PERIODIC = "periodic"  # the agent's hourly job
STOP = "stop"  # the agent stopping
PRUNE = "prune"  # retention removed the record at n+1's predecessor: this attests its link
GENESIS_KIND = "genesis"  # n = 0: the chain starts here (a new outbox, or a migrated one)
EXPORT = "export"  # ``quantrac export --signed`` signed the head it exported up to


def link(prev: bytes, n: int, seq: int, rec: Record) -> bytes:
    """``link_n`` from ``link_{n-1}`` (rules in the module docstring)."""
    return canonical_link(prev, n, record_canonical(seq, rec))


def canonical_link(prev: bytes, n: int, canonical: bytes) -> bytes:
    """``link`` from ``record_canonical``'s bytes (the outbox computes them once per record
    for both the checksum and the link)."""
    h = _LINK_BASE.copy()  # a copy of a keyed-up hasher: about half the cost of a new one
    h.update(prev + _POS.pack(n) + canonical)
    return h.digest()


@dataclass(frozen=True)
class Checkpoint:
    """The chain head at position ``n`` (record ``seq``; 0 and 0 for the genesis), as of
    ``at``; ``signature`` empty when the station had no key to sign with."""

    station_id: str
    n: int
    seq: int
    link: bytes
    at: float
    kind: str
    key_id: bytes = b""
    signature: bytes = b""
    note: str = ""


def checkpoint_message(station_id: str, n: int, seq: int, link_: bytes, at: float) -> bytes:
    """The bytes a checkpoint signature covers."""
    sid = station_id.encode("utf-8")
    return (CHECKPOINT_CONTEXT + struct.pack(">H", len(sid)) + sid
            + _CHECKPOINT.pack(n, seq, at) + link_)


@dataclass(frozen=True)
class Signer:
    """The station's identity as the store needs it to sign checkpoints."""

    station_id: str
    key: Ed25519PrivateKey

    @property
    def key_id(self) -> bytes:
        return key_id(self.key.public_key())

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)

    def checkpoint(self, n: int, seq: int, link_: bytes, at: float, kind: str,
                   note: str = "") -> Checkpoint:
        msg = checkpoint_message(self.station_id, n, seq, link_, at)
        return Checkpoint(self.station_id, n, seq, link_, at, kind, self.key_id,
                          self.key.sign(msg), note)


def checkpoint_valid(cp: Checkpoint, public: Ed25519PublicKey) -> bool:
    """True when ``cp`` is signed by ``public`` (an unsigned checkpoint is never valid)."""
    if len(cp.signature) != 64 or len(cp.link) != LINK_SIZE:
        return False
    try:
        public.verify(cp.signature, checkpoint_message(cp.station_id, cp.n, cp.seq, cp.link,
                                                       cp.at))
    except InvalidSignature:
        return False
    return True
