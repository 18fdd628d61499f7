"""An app population for tests and benchmarks: it opens the pushes a provider fake delivered.

It watches what a provider fake received (its records: each push carries its delivery's
reference, ``wavecast_ref``), decides for each push once, with probability ``open_rate``,
that its phone's owner opens it, after a log-normal delay of median ``median_delay`` seconds
(shape ``sigma``), and reports each open to ``POST /v1/events`` as the app would, once the
open has happened, with ``at`` = the instant of the tap. What it reported is kept
(``opens``) so a caller can compare the opens per second with a budget.

The fake may run in this process (`RecordStoreSource`, tests) or in its own (`FakeHttpSource`,
benchmarks: ``GET /_fake/records``); the events go through any httpx client (the ASGI app in
tests, a real ``wavecast api`` in benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import orjson

from wavecast_tools.fakes.records import RecordStore

POLL_SECONDS = 0.2
# A batch of events per request, well under the API's limit.
BATCH = 2_000


@dataclass(frozen=True, slots=True)
class Delivered:
    ref: int
    at: float
    """Wall clock (epoch seconds) when the fake received the push."""


class SendSource(Protocol):
    async def new(self) -> list[Delivered]:
        """The pushes delivered since the last call."""
        ...


def ref_of(payload: Any) -> int | None:
    """The delivery reference of one provider request body (FCM: in the message's data;
    APNs: at the top level of the payload)."""
    if not isinstance(payload, dict):
        return None
    message = payload.get("message")
    data = message.get("data") if isinstance(message, dict) else None
    raw = data.get("wavecast_ref") if isinstance(data, dict) else payload.get("wavecast_ref")
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _delivered(records: Sequence[dict[str, Any]]) -> list[Delivered]:
    found = []
    for record in records:
        if record.get("endpoint") != "send" or record.get("status") != 200:
            continue
        ref = ref_of(record.get("payload"))
        if ref is not None:
            found.append(Delivered(ref, float(record["wall"])))
    return found


class RecordStoreSource:
    """A fake running in this process (e.g. ``FcmFake.running_in_thread``)."""

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self._seen = 0

    async def new(self) -> list[Delivered]:
        records = self._store.records(self._seen)
        if records:
            self._seen = records[-1].seq
        return _delivered(
            [
                {"endpoint": r.endpoint, "status": r.status, "payload": r.payload, "wall": r.wall}
                for r in records
            ]
        )


class FakeHttpSource:
    """A fake in its own process, read through its introspection API (full recording)."""

    def __init__(self, url: str) -> None:
        self._client = httpx.AsyncClient(base_url=url, timeout=60)
        self._seen = 0

    async def new(self) -> list[Delivered]:
        answer = await self._client.get(
            "/_fake/records", params={"since": self._seen, "endpoint": "send"}
        )
        answer.raise_for_status()
        records: list[dict[str, Any]] = answer.json()["records"]
        if records:
            self._seen = max(int(r["seq"]) for r in records)
        return _delivered(records)

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass
class AppPopulation:
    source: SendSource
    events: httpx.AsyncClient
    """Posts to ``/v1/events`` (base URL and an ``events:write`` key set by the caller)."""
    open_rate: float
    median_delay: float
    sigma: float = 1.0
    seed: int = 0
    delivered: int = 0
    opens: list[float] = field(default_factory=list)
    """Epoch seconds of every open reported so far."""
    rejected: int = 0
    """Events the API did not accept (unknown refs, bad entries, non-200 answers)."""
    _due: list[tuple[float, int]] = field(default_factory=list)
    _random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.open_rate <= 1.0:
            raise ValueError(f"open_rate must be in [0, 1], got {self.open_rate}")
        if not self.median_delay > 0.0 or not self.sigma > 0.0:
            raise ValueError("median_delay and sigma must be > 0")
        self._random = random.Random(self.seed)

    def delay(self) -> float:
        return math.exp(math.log(self.median_delay) + self.sigma * self._random.gauss(0.0, 1.0))

    def take(self, pushes: Sequence[Delivered]) -> None:
        """Decide, once per push, whether and when it is opened."""
        self.delivered += len(pushes)
        for push in pushes:
            if self._random.random() < self.open_rate:
                heapq.heappush(self._due, (push.at + self.delay(), push.ref))

    def pending(self) -> int:
        return len(self._due)

    async def step(self, now: float | None = None) -> int:
        """Take new pushes and report the opens due by ``now``; returns how many."""
        self.take(await self.source.new())
        now = time.time() if now is None else now
        due: list[tuple[float, int]] = []
        while self._due and self._due[0][0] <= now:
            due.append(heapq.heappop(self._due))
        for start in range(0, len(due), BATCH):
            await self._post(due[start : start + BATCH])
        return len(due)

    async def _post(self, opens: Sequence[tuple[float, int]]) -> None:
        body = b"\n".join(
            orjson.dumps(
                {
                    "ref": ref,
                    "type": "opened",
                    "at": datetime.fromtimestamp(at, UTC).isoformat(),
                }
            )
            for at, ref in opens
        )
        answer = await self.events.post(
            "/v1/events", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
        if answer.status_code != 200:
            self.rejected += len(opens)
            return
        result = answer.json()
        self.rejected += len(result["rejected"])
        self.opens.extend(at for at, _ref in opens)

    async def run(self, stop: asyncio.Event) -> None:
        """Step every POLL_SECONDS until ``stop`` is set."""
        while not stop.is_set():
            await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)


@contextlib.asynccontextmanager
async def running(population: AppPopulation) -> AsyncIterator[AppPopulation]:
    """The population stepping in the background while the block runs."""
    stop = asyncio.Event()
    task = asyncio.create_task(population.run(stop))
    try:
        yield population
    finally:
        stop.set()
        await task


def busiest_window(times: Sequence[float], seconds: int = 10) -> float:
    """The most events in any ``seconds``-long window of whole seconds, per second."""
    if not times:
        return 0.0
    counts: dict[int, int] = {}
    for t in times:
        counts[int(t)] = counts.get(int(t), 0) + 1
    first, last = min(counts), max(counts)
    series = [counts.get(s, 0) for s in range(first, last + 1)]
    window = sum(series[:seconds])
    best = window
    for i in range(seconds, len(series)):
        window += series[i] - series[i - seconds]
        best = max(best, window)
    return best / seconds
