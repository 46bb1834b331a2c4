"""Bisection: a payload error dead-letters exactly the offending events, in O(k log n) requests.

The MockTransport answers like TikTok: HTTP 200, code 40002, naming the first bad row as
``Batch.{i}.event_id``, whenever the request holds a poison event.
"""

from __future__ import annotations

import json
import math
import threading

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_tiktok.delivery.memory_outbox import MemoryOutbox
from cdp_tiktok.delivery.worker import Deliverer
from cdp_tiktok.events import OutgoingEvent
from tests.helpers_delivery import DESTINATION, FakeClock, key_for, mapped_event, settings_for


class PoisonAwareTikTok:
    def __init__(self, poison: set[str]) -> None:
        self.poison = poison
        self.requests = 0
        self.accepted: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        ids = [item["event_id"] for item in json.loads(request.content)["data"]]
        with self._lock:
            self.requests += 1
            bad = next((i for i, event_id in enumerate(ids) if event_id in self.poison), None)
            if bad is None:
                self.accepted.extend(ids)
                return httpx.Response(200, json={"code": 0, "message": "OK", "request_id": "r"})
        message = f"Batch.{bad}.event_id: Invalid value for event_id."
        return httpx.Response(200, json={"code": 40002, "message": message, "request_id": "r"})


def bisection_bound(n: int, k: int) -> int:
    """1 + 2 x (failing requests of more than one event).

    A failing request of size > 1 sits at depth d < ceil(log2 n) of the halving tree, and
    at most min(k, 2**d) requests of depth d hold a poison event.
    """
    if k == 0 or n == 1:
        return 1
    depth = math.ceil(math.log2(n))
    return 1 + 2 * sum(min(k, 1 << d) for d in range(depth))


def run(n: int, poison_rows: set[int]) -> tuple[PoisonAwareTikTok, MemoryOutbox, int, int]:
    clock = FakeClock()
    events = [OutgoingEvent(key_for(), mapped_event(i)) for i in range(n)]
    poison = {events[i].data["event_id"] for i in poison_rows}
    outbox = MemoryOutbox()
    outbox.enqueue(events, now=clock())
    server = PoisonAwareTikTok(poison)
    report = Deliverer(
        outbox,
        {DESTINATION: settings_for()},
        transport=httpx.MockTransport(server),
        clock=clock,
        sleep=clock.sleep,
    ).run()
    assert report.requests == server.requests
    return server, outbox, report.delivered, report.dead


@settings(max_examples=200)
@given(st.data())
def test_bisection_isolates_exactly_the_poison_events(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 300), label="n")
    poison_rows = data.draw(st.sets(st.integers(0, n - 1), max_size=n), label="poison rows")
    server, outbox, delivered, dead = run(n, poison_rows)
    poison = {f"evt-{i:07d}" for i in poison_rows}
    letters = list(outbox.dead_letters())
    assert {letter.event_id for letter in letters} == poison
    assert dead == len(poison) and delivered == n - len(poison)
    assert sorted(server.accepted) == sorted({f"evt-{i:07d}" for i in range(n)} - poison)
    assert server.requests <= bisection_bound(n, len(poison))
    assert server.requests <= 1 + 2 * len(poison) * math.ceil(math.log2(n) + 1)
    for letter in letters:
        assert letter.reason == "validation"
        assert letter.history[-1].code == 40002
        assert letter.history[-1].message == "Batch.0.event_id: Invalid value for event_id."
    stats = outbox.stats()
    assert stats.pending == 0 and stats.leased == 0


def test_one_poison_in_a_full_batch_costs_about_two_log_n_requests() -> None:
    server, _, delivered, dead = run(1000, {637})
    assert (delivered, dead) == (999, 1)
    assert server.requests == 1 + 2 * 10  # ceil(log2 1000) = 10 levels, two halves each
