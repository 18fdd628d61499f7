"""The pieces the opens benchmark and the worker test stand on: the app population (which
pushes it reads, how many it opens, when) and the oracle's duration."""

from __future__ import annotations

import httpx
import pytest
from wavecast_tools.bench.opens import oracle_duration
from wavecast_tools.fakes.records import Record, RecordStore
from wavecast_tools.simulator import (
    AppPopulation,
    Delivered,
    RecordStoreSource,
    busiest_window,
    ref_of,
)

from app.rollout import opens_budget as ob


def test_the_reference_is_read_from_fcm_and_apns_payloads() -> None:
    assert ref_of({"message": {"token": "t", "data": {"wavecast_ref": "42"}}}) == 42
    assert ref_of({"aps": {"alert": "hi"}, "wavecast_ref": "7"}) == 7
    for body in (None, [], {"message": {"data": {}}}, {"wavecast_ref": "x"}, {"aps": {}}):
        assert ref_of(body) is None


def _record(seq: int, ref: int | None, status: int = 200, endpoint: str = "send") -> Record:
    data = {"wavecast_ref": str(ref)} if ref is not None else {}
    body = httpx.Request("POST", "/", json={"message": {"data": data}}).content
    return Record(
        seq=seq,
        monotonic=0.0,
        wall=1_000.0 + seq,
        endpoint=endpoint,
        method="POST",
        path="/v1/projects/p/messages:send",
        token=None,
        protocol="h2",
        connection_id=1,
        stream_id=seq,
        body=body,
        status=status,
    )


async def test_the_store_source_reads_each_delivered_push_once() -> None:
    store = RecordStore()
    for seq, ref, status, endpoint in (
        (1, 10, 200, "send"),
        (2, 11, 404, "send"),  # not delivered
        (3, None, 200, "token"),
        (4, 12, 200, "send"),
    ):
        store.append(_record(seq, ref, status, endpoint))
    source = RecordStoreSource(store)
    assert await source.new() == [Delivered(10, 1_001.0), Delivered(12, 1_004.0)]
    assert await source.new() == []
    store.append(_record(5, 13))
    assert await source.new() == [Delivered(13, 1_005.0)]


class _Nothing:
    async def new(self) -> list[Delivered]:
        return []


def test_the_population_opens_its_share_after_the_delay() -> None:
    population = AppPopulation(
        _Nothing(), httpx.AsyncClient(), open_rate=0.3, median_delay=20.0, seed=3
    )
    population.take([Delivered(ref, 0.0) for ref in range(20_000)])
    assert population.delivered == 20_000
    assert population.pending() == pytest.approx(6_000, rel=0.05)
    delays = sorted(at for at, _ref in population._due)
    assert delays[len(delays) // 2] == pytest.approx(20.0, rel=0.05)
    with pytest.raises(ValueError, match="open_rate"):
        AppPopulation(_Nothing(), httpx.AsyncClient(), open_rate=1.5, median_delay=1.0)


def test_the_busiest_window_slides_over_whole_seconds() -> None:
    assert busiest_window([]) == 0.0
    times = [0.5] * 3 + [5.2] * 10 + [14.9] * 20 + [15.0] * 4
    # [5, 15): 10 + 20; [6, 16): 20 + 4.
    assert busiest_window(times, 10) == 3.0
    assert busiest_window(times, 1) == 20.0


def test_without_opens_the_oracle_sends_at_the_throttle_and_waits_the_holds() -> None:
    nothing = (0.0,) * 30
    # Wave 1: 10 devices in one second, hold 5; wave 2: 90 more at 40 a second.
    seconds, peak = oracle_duration(100, ((10, 5), (100, 0)), nothing, budget=10.0, per_second=40.0)
    assert (seconds, peak) == (1 + 5 + 3, 0.0)


def test_the_oracle_keeps_the_expected_opens_under_the_budget() -> None:
    kernel = ob.lognormal_kernel(0.3, 20.0, 1.0, horizon=120)
    seconds, peak = oracle_duration(
        20_000, ((1, 10), (100, 0)), kernel, budget=100.0, per_second=2_000.0
    )
    assert peak <= 100.0 + ob.MIN_RATE
    # At best budget / open rate sends a second once the budget is full.
    assert seconds >= 20_000 / (100.0 / 0.3) * 0.8
