"""Send every case's output to the local sandbox, which must accept it.

The sandbox (:class:`~cdp_tiktok.sandbox.server.SandboxServer`, loopback, a free port)
checks requests as TikTok does (schema, event catalog for the event source) and answers
with TikTok's body ``code``; anything but ``0`` fails the case's round trip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from cdp_tiktok.conformance.results import CheckResult
from cdp_tiktok.events import BatchKey, OutgoingEvent
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN

TIMEOUT_SECONDS = 10.0


def round_trip(
    outputs: Mapping[str, list[OutgoingEvent]], partner_name: str | None
) -> list[CheckResult]:
    """One result per case that produced events: one request per batch key."""
    import httpx

    from cdp_tiktok.sandbox.server import SandboxServer
    from cdp_tiktok.tiktok.payload import build_request, encode_request

    results = []
    with SandboxServer(port=0) as sandbox, httpx.Client(timeout=TIMEOUT_SECONDS) as client:
        for name, events in outputs.items():
            if not events:
                continue
            started = time.perf_counter()
            result = CheckResult("sandbox", name)
            batches: dict[BatchKey, list[dict[str, object]]] = {}
            for event in events:
                batches.setdefault(event.key, []).append(event.data)
            for key, data in batches.items():
                body = encode_request(build_request(key, data, partner_name))
                try:
                    reply = client.post(
                        sandbox.track_url,
                        content=body,
                        headers={
                            "Access-Token": SANDBOX_ACCESS_TOKEN,
                            "Content-Type": "application/json",
                        },
                    )
                    answer = json.loads(reply.content)
                except (httpx.HTTPError, ValueError) as exc:
                    result.fail(f"case {name!r}: no usable answer from the sandbox: {exc}")
                    continue
                if answer.get("code") != 0:
                    result.fail(
                        f"case {name!r}: the sandbox refused the request: code "
                        f"{answer.get('code')}: {answer.get('message')}"
                    )
            result.counts = {"events": len(events), "requests": len(batches)}
            result.seconds = time.perf_counter() - started
            results.append(result)
    return results
