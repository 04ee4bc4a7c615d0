"""pipeline/domain/eventtime.Sources: the watermark is the minimum progress over the non-idle sources, never
goes back, and a stale report cannot hold it back once a source was declared idle."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain.eventtime import NEVER, Sources


def test_the_watermark_waits_for_every_expected_source_then_follows_the_slowest() -> None:
    s = Sources(frozenset({"web/0", "store/0"}))
    s.update("web/0", 100, idle=False)
    assert s.watermark() == NEVER
    s.update("store/0", 40, idle=False)
    assert s.watermark() == 40
    s.update("store/0", 20, idle=False)  # marks never go back
    assert s.watermark() == 40 and s.mark_of("store/0") == 40


def test_an_idle_source_stops_holding_it_back_and_a_report_that_does_not_advance_keeps_it_idle() -> None:
    s = Sources(frozenset({"web/0", "store/0"}))
    s.update("web/0", 100, idle=False)
    s.update("store/0", 40, idle=True)
    assert s.watermark() == 100
    # A worker that lost store/0 reports its older progress after the new owner declared it idle.
    assert s.update("store/0", 35, idle=False) is False
    assert s.idle("store/0")
    s.update("web/0", 130, idle=False)
    assert s.watermark() == 130
    assert s.update("store/0", 140, idle=False) is True  # the partition resumes with newer events
    assert not s.idle("store/0")
    assert s.watermark() == 130


reports = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 50), st.booleans()), max_size=40)


@given(reports)
def test_the_watermark_never_decreases_and_waits_until_every_source_reported(seq: list[tuple[str, int, bool]]) -> None:
    s = Sources(frozenset({"a", "b", "c"}))
    last = NEVER
    for source, mark, idle in seq:
        s.update(source, mark, idle)
        w = s.watermark()
        assert w >= last
        last = w
    heard = {name for name, _m, _i in seq}
    if heard != {"a", "b", "c"}:
        assert last == NEVER
