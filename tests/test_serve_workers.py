"""``cdp-tiktok serve --workers 2``: two processes on one port, one outbox, one identity
store; metrics summed over both processes; SIGTERM stops all of them with exit 0."""

from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdp_tiktok.ingest.workers import BALANCED
from cdp_tiktok.sandbox.server import SandboxServer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN
from tests.helpers_service import WRITE_KEY
from tests.test_ingest_clients import by_user, first, sha256, wait_for_events
from tests.test_ingest_crash import serve_process

AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, parsed by prometheus-client's own parser, on a new
    connection (so any of the processes may answer)."""
    with httpx.Client() as http:
        text = http.get(url + "/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.slow
def test_two_processes_share_the_port_count_together_and_enrich_across(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    tracks = 40
    with (
        SandboxServer(access_token=SANDBOX_ACCESS_TOKEN) as sandbox,
        serve_process(
            tmp_path,
            sandbox.url,
            options=["--workers", "2"],
            env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        ) as (process, url),
    ):
        assert httpx.get(url + "/health").json() == {"status": "ok"}
        assert httpx.get(url + "/ready").json() == {"ready": True}
        identify = {"userId": "user-1", "traits": {"email": "Ann.Lee@example.com"}}
        assert httpx.post(url + "/v1/identify", json=identify, headers=AUTH).status_code == 200
        # One new connection per request: the kernel hands them to either process.
        for i in range(tracks):
            track = {
                "userId": "user-1",
                "event": "Order Completed",
                "messageId": f"w-{i}",
                "properties": {"order_id": f"o-{i}", "revenue": 1, "currency": "USD"},
            }
            answer = httpx.post(url + "/v1/track", json=track, headers=AUTH)
            assert answer.json() == {"success": True}
        batch = {"batch": [{"type": "page", "userId": "user-2", "name": "Home"}] * 3}
        assert httpx.post(url + "/v1/batch", json=batch, headers=AUTH).status_code == 200
        refused = httpx.post(
            url + "/v1/track", content=json.dumps({"event": "x"}), headers={"x": "y"}
        )
        assert refused.status_code == 401
        events = wait_for_events(sandbox, tracks + 3)

        # Each process wrote its own files: both processes count.
        pids = {path.stem.rsplit("_", 1)[1] for path in metrics_dir.glob("counter_*.db")}
        assert len(pids) >= 2
        for _ in range(4):  # whichever process answers, the sums are the same
            samples = scrape(url)
            received = "cdp_tiktok_intake_messages_received_total"
            assert samples[(received, (("source", "web"), ("type", "track")))] == tracks
            assert samples[(received, (("source", "web"), ("type", "identify")))] == 1
            assert samples[(received, (("source", "web"), ("type", "page")))] == 3
            requests = "cdp_tiktok_intake_requests_total"
            key = (requests, (("path", "/v1/track"), ("status", "200")))
            assert samples[key] == tracks
            key = (requests, (("path", "/v1/track"), ("status", "401")))
            assert samples[key] == 1
            refusals = "cdp_tiktok_intake_messages_refused_total"
            assert samples[(refusals, (("reason", "unauthorized"),))] == 1
            mapped = "cdp_tiktok_events_mapped_total"
            key = (mapped, (("destination", "TikTok"), ("event", "Purchase")))
            assert samples[key] == tracks
            # the queue gauge comes from the shared outbox once, not once per process
            assert samples[("cdp_tiktok_outbox_records", (("state", "dead"),))] == 0
        delivered = samples[("cdp_tiktok_delivery_delivered_total", ())]
        assert delivered <= tracks + 3

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0

    purchases = [e for e in by_user(events)[sha256("user-1")] if e["event"] == "Purchase"]
    assert len(purchases) == tracks
    # every track, whichever process mapped it, carries the identify's hashed email
    assert {first(p["user"]["email"]) for p in purchases} == {sha256("ann.lee@example.com")}
    assert "Ann.Lee" not in "".join(p.read_text("latin-1") for p in tmp_path.glob("*.db"))


def test_the_metrics_directory_is_managed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cdp_tiktok.ingest.workers import MULTIPROC_ENV, metrics_directory

    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with metrics_directory() as made:
        assert made.is_dir() and os.environ[MULTIPROC_ENV] == str(made)
        (made / "counter_1.db").write_bytes(b"x")
    assert not made.exists() and MULTIPROC_ENV not in os.environ

    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_99.db").write_bytes(b"stale")
    (given / "notes.txt").write_text("kept")
    monkeypatch.setenv(MULTIPROC_ENV, str(given))
    with metrics_directory() as used:
        assert used == given and not (given / "counter_99.db").exists()
    assert (given / "notes.txt").exists() and os.environ[MULTIPROC_ENV] == str(given)


def _children(pid: int) -> list[int]:
    found = []
    for listed in Path(f"/proc/{pid}/task").glob("*/children"):
        found.extend(int(child) for child in listed.read_text().split())
    return found


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


@pytest.mark.slow
@pytest.mark.skipif(not BALANCED, reason="the kernel balances connections only on Linux")
def test_each_process_listens_on_a_socket_of_its_own(tmp_path: Path) -> None:
    # With one shared socket, the first process to wake accepted every connection
    # waiting: 8 keep-alive clients starting together all went to one process.
    with serve_process(
        tmp_path, "http://127.0.0.1:9", options=["--workers", "2", "--no-worker"]
    ) as (
        process,
        url,
    ):
        port = int(url.rsplit(":", 1)[1])
        listening = _listening_inodes(port)
        owners = {child: _socket_inodes(child) & listening for child in _children(process.pid)}
        held = [inodes for inodes in owners.values() if inodes]
        assert len(listening) == 2
        assert len(held) == 2 and all(len(inodes) == 1 for inodes in held)
        assert set.union(*held) == listening  # one socket each, none shared
        assert not _socket_inodes(process.pid) & listening  # the parent keeps none open
        assert httpx.get(url + "/health").json() == {"status": "ok"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
