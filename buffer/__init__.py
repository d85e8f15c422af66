"""quantrac-edge: buffer — the station's durable outbox and raw-sample store on SQLite.

``Store`` is the outbox (records with sequence numbers, pending -> sent -> acked), the raw
sample table, retention and the disk-full policy. ``buffer.db`` holds the SQLite helpers any
store of the project reuses (the centre's too): ``open_checked`` (pragmas, integrity check,
move-aside of a corrupt file), ``transaction``, ``StoreFullError``; ``buffer.rows`` maps a
``Record`` to columns and back.
"""

from buffer.db import StoreFullError, open_checked, transaction
from buffer.store import OUTBOX_NAME, OutboxStatus, Pruned, Store

__all__ = ["OUTBOX_NAME", "OutboxStatus", "Pruned", "Store", "StoreFullError", "open_checked",
           "transaction"]
