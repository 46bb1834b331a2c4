"""The sandbox HTTP server: stdlib ``HTTPServer``, HTTP/1.1 keep-alive, bounded threads.

Routes: ``POST /open_api/v1.3/event/track/`` (TikTok's endpoint), and for inspection
``GET /sandbox/events[?since=N]``, ``GET /sandbox/stats``, ``POST /sandbox/reset``.

A crowd is queued, not refused: the listen backlog holds :data:`LISTEN_BACKLOG`
connections, accepted connections wait for one of :data:`MAX_CONNECTIONS` worker
threads (the thread count never grows past it), and a connection that sends nothing for
``read_timeout`` seconds (a slow client, or an idle keep-alive) is closed.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cdp_tiktok.sandbox.api import Faults, Reply, TrackApi
from cdp_tiktok.sandbox.state import DEFAULT_MEMORY_LIMIT, EventStore, SandboxStats
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN
from cdp_tiktok.tiktok.payload import ENDPOINT_PATH

MAX_BODY_BYTES = 16 * 1024 * 1024
LISTEN_BACKLOG = 1024
"""Connections the kernel queues before the server accepts them."""
MAX_CONNECTIONS = 256
"""Connections served at once (one worker thread each); more wait in the queue."""
READ_TIMEOUT = 30.0
"""Seconds a connection may stay silent (mid-request or idle keep-alive) before it is
closed; longer than any client's keep-alive pause between batches."""
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json(status: int, value: Any) -> Reply:
    return Reply(status, _dumps(value).encode("utf-8"))


class _HTTPServer(HTTPServer):
    """Serves each connection on a bounded pool of worker threads; tracks open
    connections so :meth:`close_connections` can end idle keep-alives."""

    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        api: TrackApi,
        log: Callable[[str], None] | None,
        read_timeout: float,
    ):
        self.api = api
        self.log = log
        self.read_timeout = read_timeout
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._workers = ThreadPoolExecutor(MAX_CONNECTIONS, "cdp-tiktok-sandbox-connection")
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Queue the connection for a worker thread (the accept loop never waits)."""
        with self._open_lock:
            self._open.add(request)
        request.settimeout(self.read_timeout)  # a silent client is cut off
        self._workers.submit(self._serve, request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except OSError:
            pass  # the client went away mid-answer
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        """Close the listening socket; queued connections are dropped, not served."""
        super().server_close()
        self._workers.shutdown(wait=False, cancel_futures=True)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TikTokSandbox/1.0"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's per-request stderr line (see ``log``)."""

    def _read_body(self) -> bytes | None:
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self._send(_json(411, {"code": 411, "message": "Content-Length required"}))
            self.close_connection = True
            return None
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._send(_json(413, {"code": 413, "message": "Request body too large"}))
            self.close_connection = True
            return None
        return self.rfile.read(length)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = urlsplit(self.path).path
        if path == ENDPOINT_PATH:
            reply = self.server.api.handle(self.headers.get("Access-Token"), body)
            if reply is None:
                self.close_connection = True
                self._log("dropped the connection")
                return
        elif path == "/sandbox/reset":
            self.server.api.store.reset()
            reply = _json(200, {"reset": True})
        else:
            reply = _json(404, {"code": 404, "message": f"no route POST {path}"})
        self._log(f"HTTP {reply.status} {reply.body[:120].decode('utf-8', 'replace')}")
        self._send(reply)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        store = self.server.api.store
        if parts.path == "/sandbox/stats":
            reply = _json(200, store.stats().as_dict())
        elif parts.path == "/sandbox/events":
            since_values = parse_qs(parts.query).get("since", ["0"])
            try:
                since = max(0, int(since_values[0]))
            except ValueError:
                reply = _json(400, {"code": 400, "message": "since must be an integer"})
            else:
                reply = _json(200, store.events(since))
        elif parts.path == ENDPOINT_PATH:
            reply = _json(405, {"code": 405, "message": "use POST"})
        else:
            reply = _json(404, {"code": 404, "message": f"no route GET {parts.path}"})
        self._send(reply)

    def _log(self, text: str) -> None:
        if self.server.log is not None:
            self.server.log(f"{self.command} {urlsplit(self.path).path} -> {text}")


class SandboxServer:
    """A local TikTok Events API on ``host:port`` (port 0 picks a free one).

    Answers like TikTok (HTTP 200 with a body ``code``), keeps the newest
    ``memory_limit`` accepted events in memory (0: none; counters and duplicate detection
    always cover every event) and, with ``record_path``, appends every accepted event to
    a JSON Lines file. Faults: ``throttle_rate``, ``error_rate`` and ``drop_rate`` are
    probabilities per request drawn from ``random.Random(seed)``; ``latency_ms`` delays
    every answer; any batch holding an event_id in ``poison`` fails with 40002.
    ``allowed_source_ids`` (``None`` = any) answers 40001 for other event_source_ids.
    At most :data:`MAX_CONNECTIONS` connections are served at once (others queue); one
    silent for ``read_timeout`` seconds is closed.
    ``require_page_url`` refuses web events without ``page.url`` (40002, off by default:
    TikTok's established integrations send server-side web events without a page).
    Usable as a context manager (start on enter, stop on exit).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        access_token: str = SANDBOX_ACCESS_TOKEN,
        throttle_rate: float = 0.0,
        error_rate: float = 0.0,
        drop_rate: float = 0.0,
        latency_ms: float = 0,
        poison: Iterable[str] = (),
        record_path: str | Path | None = None,
        seed: int | None = None,
        allowed_source_ids: Iterable[str] | None = None,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        log: Callable[[str], None] | None = None,
        read_timeout: float = READ_TIMEOUT,
        require_page_url: bool = False,
    ) -> None:
        faults = Faults(throttle_rate, error_rate, drop_rate, latency_ms, frozenset(poison))
        self._store = EventStore(None if record_path is None else Path(record_path), memory_limit)
        self._api = TrackApi(
            self._store,
            access_token=access_token,
            faults=faults,
            seed=seed,
            allowed_source_ids=allowed_source_ids,
            require_page_url=require_page_url,
        )
        self._address = (host, port)
        self._log = log
        self._read_timeout = read_timeout
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (valid once started)."""
        if self._httpd is None:
            raise RuntimeError("the sandbox is not started")
        host, port = self._httpd.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{text}]" if ":" in text else text
        return f"http://{shown}:{port}"

    @property
    def track_url(self) -> str:
        """The full URL of the track endpoint."""
        return self.url + ENDPOINT_PATH

    def start(self) -> SandboxServer:
        """Bind and serve from a background thread; returns ``self``."""
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer(self._address, self._api, self._log, self._read_timeout)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="cdp-tiktok-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and the record file."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.close_connections()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._store.close()

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        """Accepted events (records with ``seq >= since``), oldest first."""
        return self._store.events(since)

    def stats(self) -> SandboxStats:
        """A snapshot of the counters."""
        return self._store.stats()

    def reset(self) -> None:
        """Forget recorded events, de-duplication keys and counters."""
        self._store.reset()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
