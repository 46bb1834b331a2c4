"""End to end: a SQLite outbox file, the Deliverer, real loopback HTTP to the sandbox.

The sandbox injects throttling (40100), gateway errors (HTTP 503), dropped connections and
poison event_ids (40002, naming the row); delivery must still land every valid event and
dead-letter exactly the poison ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdp_tiktok.backends import open_outbox
from cdp_tiktok.delivery.retry import RatePolicy, RetryPolicy
from cdp_tiktok.delivery.worker import Deliverer
from cdp_tiktok.events import OutgoingEvent
from cdp_tiktok.sandbox.server import SandboxServer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN
from tests.helpers_delivery import DESTINATION, key_for, mapped_event, settings_for

FAST_RETRY = RetryPolicy(base_delay=0.005, max_delay=0.05, max_retry_after=0.1)
FAST_RATE = RatePolicy(ceiling=1000.0, floor=50.0)


@pytest.fixture
def sandbox_factory() -> Iterator[type[SandboxServer]]:
    started: list[SandboxServer] = []

    class Tracked(SandboxServer):
        def start(self) -> SandboxServer:
            started.append(self)
            return super().start()

    yield Tracked
    for server in started:
        server.stop()


def test_faulty_sandbox_gets_every_valid_event_and_poison_is_dead_lettered(
    tmp_path: Path, sandbox_factory: type[SandboxServer]
) -> None:
    n = 3000
    events = [OutgoingEvent(key_for(), mapped_event(i)) for i in range(n)]
    poison = {f"evt-{i:07d}" for i in (5, 777, 778, 1999, 2999)}
    sandbox = sandbox_factory(
        throttle_rate=0.15, error_rate=0.15, drop_rate=0.15, poison=poison, seed=20251125
    ).start()
    outbox = open_outbox(f"sqlite:///{tmp_path / 'outbox.db'}")
    outbox.enqueue(events)
    settings = settings_for(
        sandbox.url,
        access_token=SANDBOX_ACCESS_TOKEN,
        batch_max_events=250,
        max_attempts=60,
        timeout_seconds=5.0,
    )
    report = Deliverer(
        outbox,
        {DESTINATION: settings},
        retry_policy=FAST_RETRY,
        rate_policy=FAST_RATE,
        worker_id="e2e",
    ).run(drain=True)

    recorded = {record["data"]["event_id"] for record in sandbox.events()}
    valid = {event.data["event_id"] for event in events} - poison
    assert recorded == valid
    letters = list(outbox.dead_letters())
    assert {letter.event_id for letter in letters} == poison
    assert {letter.reason for letter in letters} == {"validation"}
    assert all("event_id" in letter.history[-1].message for letter in letters)
    assert report.dead == len(poison) and report.delivered == len(valid)
    assert report.stopped == {}
    stats = outbox.stats()
    assert (stats.pending, stats.leased, stats.held, stats.dead) == (0, 0, 0, len(poison))
    faults = sandbox.stats()
    assert faults.throttled and faults.errors and faults.dropped  # the faults did happen
    assert report.retried > 0
    outbox.close()


def test_wrong_token_stops_the_destination_and_keeps_its_events(
    tmp_path: Path, sandbox_factory: type[SandboxServer]
) -> None:
    sandbox = sandbox_factory().start()
    outbox = open_outbox(f"sqlite:///{tmp_path / 'outbox.db'}")
    live = [OutgoingEvent(key_for("live"), mapped_event(i)) for i in range(400)]
    broken = [OutgoingEvent(key_for("broken"), mapped_event(i)) for i in range(1000, 1300)]
    outbox.enqueue(live + broken)
    report = Deliverer(
        outbox,
        {
            "live": settings_for(sandbox.url, access_token=SANDBOX_ACCESS_TOKEN),
            "broken": settings_for(sandbox.url, access_token="not-the-sandbox-token"),
        },
        retry_policy=FAST_RETRY,
    ).run()
    assert report.delivered == 400 and report.dead == 0
    assert list(report.stopped) == ["broken"]
    assert "40105" in report.stopped["broken"]
    assert "not-the-sandbox-token" not in report.stopped["broken"]
    assert {r["data"]["event_id"] for r in sandbox.events()} == {e.data["event_id"] for e in live}
    assert outbox.stats().pending == 300
    outbox.close()
