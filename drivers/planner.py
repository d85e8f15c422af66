"""Request planning: the fewest FC03/FC04 reads that cover the registers a station needs.

Every Modbus transaction costs a request, a turnaround and a response header on a shared,
half-duplex RS-485 line (about 25 ms of overhead per read at 9600 baud), so reading ten scattered
words one by one is several times slower than one read spanning them. Contiguous words are
merged, and short gaps of unused words are bridged when reading them costs less than a second
transaction (2 bytes per unused word against 13 bytes of framing and two frame gaps).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from drivers.modbus import MAX_READ_COUNT


@dataclass(frozen=True, order=True)
class ReadBlock:
    """One read request: ``count`` words from ``address`` with ``function`` (3 or 4)."""

    function: int
    address: int
    count: int

    def registers(self) -> range:
        return range(self.address, self.address + self.count)


def plan_reads(registers: Iterable[tuple[int, int]], max_gap: int = 8,
               max_count: int = MAX_READ_COUNT, *,
               values: Iterable[tuple[int, int, int]] = ()) -> list[ReadBlock]:
    """Merge ``(function, address)`` words into read blocks, sorted.

    Words of one function are merged when at most ``max_gap`` unused words lie between them and
    the block stays within ``max_count`` words. Blocks never overlap, so no word is read twice,
    and every requested word lies in exactly one block. The gap bridged is read from the device,
    so a device that rejects reads of unmapped words needs ``max_gap=0``.

    ``values`` lists ``(function, address, words)`` multi-word values (see
    drivers.profile.profile_values): a value is never split across two reads when it fits one,
    because its two halves would then be read at different times (a torn float or counter).
    """
    if not 1 <= max_count <= MAX_READ_COUNT:
        raise ValueError(f"max_count {max_count} is outside 1..{MAX_READ_COUNT}")
    if max_gap < 0:
        raise ValueError(f"max_gap {max_gap} is negative")
    by_function: dict[int, set[int]] = {}
    for function, address in registers:
        if not 0 <= address <= 0xFFFF:
            raise ValueError(f"register address {address} is outside 0..65535")
        by_function.setdefault(function, set()).add(address)
    # A value's words, all requested and fitting one read, form one atom that moves as a whole.
    atom_end: dict[tuple[int, int], int] = {}
    for function, address, words in values:
        wanted = by_function.get(function, set())
        last = address + words - 1
        if 1 < words <= max_count and all(a in wanted for a in range(address, last + 1)):
            atom_end[(function, address)] = max(last, atom_end.get((function, address), last))
    blocks: list[ReadBlock] = []
    for function, addresses in by_function.items():
        start = end = -1  # current block covers start..end inclusive
        for address in sorted(addresses):
            if address <= end:
                continue  # inside an atom already placed
            last = atom_end.get((function, address), address)
            if start >= 0 and address - end - 1 <= max_gap and last - start < max_count:
                end = last
                continue
            if start >= 0:
                blocks.append(ReadBlock(function, start, end - start + 1))
            start, end = address, last
        if start >= 0:
            blocks.append(ReadBlock(function, start, end - start + 1))
    return sorted(blocks)
