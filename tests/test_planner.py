"""Request planner: few reads, never a word twice, never over 125 words, nothing left out."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.planner import ReadBlock, plan_reads
from drivers.profile import builtin_profile, profile_registers, profile_values

regs_st = st.sets(st.tuples(st.sampled_from((3, 4)), st.integers(0, 0xFFFF)), max_size=300)
dense_st = st.sets(st.tuples(st.sampled_from((3, 4)), st.integers(0, 400)), max_size=400)


def test_merges_runs_and_bridges_small_gaps() -> None:
    regs = {(3, 0), (3, 1), (3, 2), (3, 10), (3, 20), (4, 0), (4, 1)}
    assert plan_reads(regs, max_gap=8) == [ReadBlock(3, 0, 11), ReadBlock(3, 20, 1),
                                           ReadBlock(4, 0, 2)]
    assert plan_reads(regs, max_gap=0) == [ReadBlock(3, 0, 3), ReadBlock(3, 10, 1),
                                           ReadBlock(3, 20, 1), ReadBlock(4, 0, 2)]


def test_splits_at_125_words() -> None:
    blocks = plan_reads({(3, a) for a in range(300)})
    assert blocks == [ReadBlock(3, 0, 125), ReadBlock(3, 125, 125), ReadBlock(3, 250, 50)]


def test_builtin_profiles_plan() -> None:
    assert plan_reads(profile_registers(builtin_profile("cems"))) == [
        ReadBlock(3, 0, 1), ReadBlock(4, 0, 18)]
    assert plan_reads(profile_registers(builtin_profile("hach_sc"))) == [
        ReadBlock(3, 0, 6), ReadBlock(3, 48, 1)]


@given(st.one_of(regs_st, dense_st), st.integers(0, 20), st.integers(1, 125))
def test_plan_properties(regs: set[tuple[int, int]], max_gap: int, max_count: int) -> None:
    blocks = plan_reads(regs, max_gap=max_gap, max_count=max_count)
    assert blocks == sorted(blocks)
    seen: set[tuple[int, int]] = set()
    for b in blocks:
        assert 1 <= b.count <= max_count <= 125
        assert b.address + b.count <= 0x10000
        words = {(b.function, a) for a in b.registers()}
        assert not words & seen, "a word is read twice"
        seen |= words
        # a block starts and ends on a requested word: nothing useless at its edges
        assert (b.function, b.address) in regs
        assert (b.function, b.address + b.count - 1) in regs
    assert regs <= seen, "a requested word is not read"


@given(dense_st)
def test_no_gap_wider_than_max_gap_is_bridged(regs: set[tuple[int, int]]) -> None:
    for b in plan_reads(regs, max_gap=3):
        inside = sorted(a for f, a in regs if f == b.function and a in b.registers())
        assert all(y - x - 1 <= 3 for x, y in itertools.pairwise(inside))


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_count 126"):
        plan_reads({(3, 0)}, max_count=126)
    with pytest.raises(ValueError, match="address 70000"):
        plan_reads({(3, 70000)})


def test_values_are_not_torn_across_reads() -> None:
    regs = {(3, a) for a in range(0, 10)}
    values = [(3, a, 2) for a in range(0, 10, 2)]
    assert plan_reads(regs, max_count=5) == [ReadBlock(3, 0, 5), ReadBlock(3, 5, 5)]
    assert plan_reads(regs, max_count=5, values=values) == [ReadBlock(3, 0, 4),
                                                             ReadBlock(3, 4, 4),
                                                             ReadBlock(3, 8, 2)]
    cems = builtin_profile("cems")
    blocks = plan_reads(profile_registers(cems), max_count=5, values=profile_values(cems))
    for ch in cems.channels:
        assert any(set(ch.registers()) <= {(b.function, a) for a in b.registers()}
                   for b in blocks), ch.name


@given(dense_st, st.integers(0, 10), st.integers(1, 125), st.data())
def test_plan_properties_with_values(regs: set[tuple[int, int]], max_gap: int, max_count: int,
                                     data: st.DataObject) -> None:
    values = data.draw(st.lists(st.tuples(st.sampled_from((3, 4)), st.integers(0, 400),
                                          st.sampled_from((2, 4))), max_size=40))
    blocks = plan_reads(regs, max_gap=max_gap, max_count=max_count, values=values)
    seen: set[tuple[int, int]] = set()
    for b in blocks:
        assert 1 <= b.count <= max_count
        words = {(b.function, a) for a in b.registers()}
        assert not words & seen
        seen |= words
    assert regs <= seen
