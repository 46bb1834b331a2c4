"""Two ``cdp-tiktok serve`` processes on one PostgreSQL database: an identify posted to
one enriches a track posted to the other (issue 12), and only hashes reach the tables."""

from __future__ import annotations

import base64
import json
import signal
from pathlib import Path

import httpx
import psycopg

from cdp_tiktok.matchkeys import sha256_hex
from cdp_tiktok.sandbox.server import SandboxServer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN
from tests.helpers_service import WRITE_KEY
from tests.pg import fresh_database
from tests.test_ingest_clients import wait_for_events
from tests.test_ingest_crash import serve_process

EMAIL = "Two.Serve@Example.com"
PHONE = "+1 213 373 4253"
USER_ID = "user-TWOSERVE-77"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


def _post(url: str, path: str, message: dict[str, object]) -> None:
    answer = httpx.post(url + path, content=json.dumps(message), headers=AUTH, timeout=15)
    assert answer.status_code == 200 and answer.json() == {"success": True}, answer.text


def _dump_every_table(url: str) -> tuple[list[str], str]:
    with psycopg.connect(url) as conn:
        tables = [
            row[0]
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        dump = "".join(str(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)
    return tables, dump.lower()


def test_identify_on_one_serve_enriches_a_track_on_another(tmp_path: Path) -> None:
    with fresh_database() as url, SandboxServer(access_token=SANDBOX_ACCESS_TOKEN) as sandbox:
        stores = {"outbox": url, "identity": url}
        with (
            serve_process(tmp_path / "a", sandbox.url, **stores) as (first, first_url),
            serve_process(tmp_path / "b", sandbox.url, **stores) as (second, second_url),
        ):
            assert first_url != second_url  # two processes, two ports
            _post(
                first_url,
                "/v1/identify",
                {
                    "userId": USER_ID,
                    "messageId": "two-identify-1",
                    "traits": {"email": EMAIL, "phone": PHONE},
                },
            )
            _post(
                second_url,
                "/v1/track",
                {
                    "userId": USER_ID,
                    "event": "Order Completed",
                    "messageId": "two-track-1",
                    "properties": {"order_id": "o-1", "revenue": 3, "currency": "EUR"},
                },
            )
            events = wait_for_events(sandbox, 1, timeout=30)
            tables, dump = _dump_every_table(url)
            for process in (first, second):
                process.send_signal(signal.SIGTERM)
            assert first.wait(timeout=30) == 0
            assert second.wait(timeout=30) == 0
    purchases = [e for e in events if e["event"] == "Purchase"]
    assert [e["event_id"] for e in purchases] == ["two-track-1"]
    user = purchases[0]["user"]
    assert user["email"] == [sha256_hex(EMAIL.lower())]
    assert user["phone"] == [sha256_hex("+12133734253")]
    assert {"cdp_outbox", "cdp_identity_keys"} <= set(tables)
    assert "two-track-1" in dump and sha256_hex(EMAIL.lower()) in dump  # the rows are there...
    for raw in (EMAIL.lower(), "2133734253", "373 4253", USER_ID.lower()):
        assert raw not in dump  # ...but only hashed
