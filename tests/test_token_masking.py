"""The access token never reaches a dead letter, a printout or the outbox file, whatever
an upstream answer does with it (issue 9 point 9).

A real loopback HTTP server answers like a broken gateway that echoes the token it was
sent in every field it has, in several cases; ``send`` dead-letters the events, then
``dlq list``/``dlq show`` and the raw bytes of the outbox files are searched."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cdp_tiktok.cli import main

TOKEN = "Tok3n-Secret-abcDEF0123456789"
VARIANTS = (TOKEN, TOKEN.lower(), TOKEN.upper(), TOKEN.swapcase())
PIXEL = "CTESTPIXEL0000000001"


class _Echo(BaseHTTPRequestHandler):
    """One event whose id ends in 'json' gets a TikTok-shaped 40002 echoing the token in
    message and request_id; any other single event gets an HTML 400 echoing it in the
    body and a header; a batch of several gets a 40002 (so it is bisected)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        sent = self.headers.get("Access-Token", "")
        data = body.get("data", [])
        if len(data) > 1 or data[0]["event_id"].endswith("json"):
            answer = {
                "code": 40002,
                "message": f"invalid event; token {sent.lower()} / {sent.upper()} refused",
                "request_id": f"{sent.swapcase()}-{sent}",
            }
            reply, kind, status = json.dumps(answer).encode(), "application/json", 200
        else:
            reply = f"<html><body>Bad request for {sent.upper()} ({sent})</body></html>".encode()
            kind, status = "text/html", 400
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("X-Echo", sent)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _message(event_id: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "u1",
        "messageId": event_id,
        "timestamp": "2025-01-01T00:00:00Z",
        "properties": {"revenue": 10, "currency": "USD"},
        "context": {"page": {"url": "https://shop.example/"}},
    }


def _assert_clean(text: str | bytes, where: str) -> None:
    blob = text.encode() if isinstance(text, str) else text
    for variant in VARIANTS:
        assert variant.encode() not in blob, f"token ({variant}) in {where}"


def test_an_echoed_token_is_masked_in_every_field_case_and_printer(
    echo_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(_message(i)) for i in ("m-json", "m-html")) + "\n")
    outbox = f"sqlite:///{tmp_path / 'out.db'}"
    runner = CliRunner()
    sent = runner.invoke(
        main,
        [
            "send", str(source), "--endpoint", echo_url, "--access-token", TOKEN,
            "--pixel-code", PIXEL, "--outbox", outbox, "--identity", "memory://",
        ],
    )  # fmt: skip
    assert sent.exit_code == 1, sent.output
    _assert_clean(sent.output, "the send summary")
    listed = runner.invoke(main, ["dlq", "--outbox", outbox, "list"])
    assert listed.exit_code == 0, listed.output
    _assert_clean(listed.output, "dlq list")
    ids = [line.split()[0] for line in listed.stdout.splitlines() if "m-" in line]
    assert len(ids) == 2, listed.output
    shown = ""
    for dead_id in ids:
        result = runner.invoke(main, ["dlq", "--outbox", outbox, "show", dead_id])
        assert result.exit_code == 0, result.output
        shown += result.output
    _assert_clean(shown, "dlq show")
    assert "request_id=***-***" in shown  # the echo is kept, the token is not
    assert "token *** / *** refused" in shown
    assert "Bad request for *** (***)" in shown
    files = list(tmp_path.glob("out.db*"))
    assert files
    for path in files:
        _assert_clean(path.read_bytes(), path.name)
