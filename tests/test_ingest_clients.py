"""The official Segment clients, unchanged, talking to the intake on loopback; every
event they send reaches the local TikTok sandbox hashed and enriched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from cdp_tiktok.sandbox.server import SandboxServer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN
from tests.conftest import require_service
from tests.helpers_service import PAGE_URL, WRITE_KEY, running_intake, service_settings

NODE_PREFIX_ENV = "CDP_TIKTOK_NODE_PREFIX"
NODE_PACKAGE = "@segment/analytics-node"
EMAIL = "Ann.Lee@Example.com"
PHONE = "+14155550100"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def wait_for_events(
    sandbox: SandboxServer, count: int, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """The data[] items the sandbox accepted, once ``count`` arrived (bounded wait;
    delivery is asynchronous)."""
    deadline = time.monotonic() + timeout
    while sandbox.stats().accepted_events < count:
        assert time.monotonic() < deadline, (
            f"only {sandbox.stats().accepted_events} of {count} events reached the sandbox"
        )
        time.sleep(0.05)
    return [record["data"] for record in sandbox.events()]


def first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def by_user(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        key = first(event.get("user", {}).get("external_id"))
        found.setdefault(str(key), []).append(event)
    return found


def python_client(url: str, errors: list[Any], **options: Any) -> Any:
    """The official analytics-python client pointed at ``url``; errors are collected."""
    from segment.analytics import Client

    return Client(
        write_key=WRITE_KEY,
        host=url,
        on_error=lambda error, batch: errors.append(error),
        max_retries=2,
        upload_interval=0.05,
        **options,
    )


def test_python_client_identify_track_page_and_a_batch_of_500(tmp_path: Path) -> None:
    with SandboxServer(access_token=SANDBOX_ACCESS_TOKEN) as sandbox:
        settings = service_settings(tmp_path, sandbox.url)
        with running_intake(settings) as intake:
            errors: list[Any] = []
            client = python_client(intake.url, errors)
            client.identify("user-1", {"email": EMAIL, "phone": PHONE})
            client.flush()  # identify first: its keys must be known when the track is mapped
            client.track(
                "user-1",
                "Order Completed",
                {"order_id": "o-1", "revenue": 42.5, "currency": "USD"},
                context={"page": {"url": PAGE_URL + "checkout"}},
            )
            client.page("user-1", "Shop", "Home")
            for index in range(500):
                client.track(
                    f"batch-user-{index}",
                    "Product Added",
                    {"product_id": f"p-{index}", "price": 3.5, "currency": "USD"},
                )
            client.flush()
            client.shutdown()
            assert errors == []
            events = wait_for_events(sandbox, 502)
    assert len(events) == 502
    users = by_user(events)
    mine = users[sha256("user-1")]
    assert sorted(e["event"] for e in mine) == ["Pageview", "Purchase"]
    purchase = next(e for e in mine if e["event"] == "Purchase")
    # The identify's hashed keys enrich the later track; nothing raw left the service.
    assert first(purchase["user"]["email"]) == sha256("ann.lee@example.com")
    assert first(purchase["user"]["phone"]) == sha256(PHONE)
    added = [e for e in events if e["event"] == "AddToCart"]
    assert len(added) == 500
    assert len({e["event_id"] for e in added}) == 500
    expected = {sha256(f"batch-user-{index}") for index in range(500)}
    assert {first(event["user"]["external_id"]) for event in added} == expected


def test_python_client_with_gzip(tmp_path: Path) -> None:
    with SandboxServer(access_token=SANDBOX_ACCESS_TOKEN) as sandbox:
        settings = service_settings(tmp_path, sandbox.url)
        with running_intake(settings) as intake:
            errors: list[Any] = []
            client = python_client(intake.url, errors, gzip=True)
            for index in range(3):
                client.track(f"gz-{index}", "Product Added", {"price": 1, "currency": "USD"})
            client.flush()
            client.shutdown()
            assert errors == []
            events = wait_for_events(sandbox, 3)
    assert sorted(first(e["user"]["external_id"]) for e in events) == sorted(
        sha256(f"gz-{index}") for index in range(3)
    )


def _node_prefix() -> Path:
    return Path(os.environ.get(NODE_PREFIX_ENV) or Path.home() / ".cache" / "cdp_tiktok" / "node")


def _node_client() -> Path | None:
    """The directory holding node_modules/@segment/analytics-node, installing it there
    from the npm registry if it is missing; ``None`` when that is impossible."""
    prefix = _node_prefix()
    if (prefix / "node_modules" / NODE_PACKAGE / "package.json").exists():
        return prefix
    npm = shutil.which("npm")
    if npm is None:
        return None
    prefix.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), NODE_PACKAGE],
        capture_output=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        return None
    return prefix


NODE_SCRIPT = """
const { Analytics } = require('@segment/analytics-node');
const [host, writeKey, pageUrl] = process.argv.slice(2);
const analytics = new Analytics({ writeKey, host, maxEventsInBatch: 20, flushInterval: 50 });
let failed = false;
analytics.on('error', (err) => { failed = true; console.error('error', err.code || err.message); });
analytics.identify({ userId: 'node-user', traits: { email: 'Node.User@Example.com' } });
(async () => {
  await analytics.flush();
  for (let i = 0; i < 50; i++) {
    analytics.track({
      userId: 'node-user', event: 'Order Completed',
      properties: { order_id: 'n-' + i, revenue: 10 + i, currency: 'EUR' },
      context: { page: { url: pageUrl } },
    });
  }
  await analytics.closeAndFlush({ timeout: 20000 });
  process.exit(failed ? 1 : 0);
})();
"""


def test_node_client_track(tmp_path: Path) -> None:
    node = shutil.which("node")
    require_service(node is not None, "node is not installed")
    prefix = _node_client()
    require_service(
        prefix is not None, f"{NODE_PACKAGE} is not installed and npm cannot install it"
    )
    assert node is not None and prefix is not None
    script = tmp_path / "send_events.js"
    script.write_text(NODE_SCRIPT, encoding="utf-8")
    env = {**os.environ, "NODE_PATH": str(prefix / "node_modules")}
    with SandboxServer(access_token=SANDBOX_ACCESS_TOKEN) as sandbox:
        settings = service_settings(tmp_path, sandbox.url)
        with running_intake(settings) as intake:
            result = subprocess.run(
                [node, str(script), intake.url, WRITE_KEY, PAGE_URL],
                capture_output=True,
                text=True,
                timeout=120,
                env=env,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            events = wait_for_events(sandbox, 50)
    assert len(events) == 50
    assert {e["event"] for e in events} == {"Purchase"}
    assert len({e["event_id"] for e in events}) == 50
    for event in events:
        assert first(event["user"]["email"]) == sha256("node.user@example.com")
    assert json.dumps(events).count("Node.User") == 0
