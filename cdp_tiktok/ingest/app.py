"""The ASGI application: Segment's HTTP Tracking API, health, readiness and metrics.

Routes are built from :data:`~cdp_tiktok.ingest.endpoints.ENDPOINTS`, one handler for
every row. The order of checks of a POST: authentication (Basic header, else the
body's ``writeKey``; anything refused before a valid key is known is answered 401, so
the answer never tells what was wrong with an unauthenticated request), size limits,
gzip, JSON, the batch envelope, then each message in the pipeline thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from cdp_tiktok.ingest.auth import basic_user
from cdp_tiktok.ingest.body import (
    Refusal,
    decompress,
    read_json,
    read_limited,
)
from cdp_tiktok.ingest.config import IntakeConfig
from cdp_tiktok.ingest.endpoints import ENDPOINTS, Endpoint
from cdp_tiktok.ingest.metrics import CONTENT_TYPE, ServiceMetrics
from cdp_tiktok.ingest.pipeline import Job, JobResult, Pipeline
from cdp_tiktok.messages import MessageError, expand_batch

access_log = logging.getLogger("cdp_tiktok.ingest.access")


def _unauthorized() -> Refusal:
    # A new exception each time: re-raising one shared instance would grow its traceback.
    return Refusal(401, "unauthorized", "a valid write key is required")


@dataclass
class IntakeService:
    """What the application serves with: its configuration, the pipeline, the metrics,
    the readiness probe (returns problems; empty means ready) and what runs beside it.

    ``on_start``/``on_stop`` run at application start-up and shut-down (the embedded
    delivery worker is started and stopped there).
    """

    config: IntakeConfig
    pipeline: Pipeline
    metrics: ServiceMetrics
    readiness: Callable[[], list[str]]
    on_start: list[Callable[[], None]] = field(default_factory=list)
    on_stop: list[Callable[[], None]] = field(default_factory=list)

    async def run(
        self,
        items: Sequence[Any],
        kind: str | None,
        source: str,
        size: int,
        *,
        surrogates: bool = True,
    ) -> JobResult:
        """Hand the items to the pipeline thread; return once they are durable or refused.
        ``surrogates``: whether a string may hold a lone surrogate (see :class:`Job`)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JobResult] = loop.create_future()

        def resolve(result: JobResult) -> None:
            if not future.done():
                future.set_result(result)

        def done(result: JobResult) -> None:
            loop.call_soon_threadsafe(resolve, result)

        self.pipeline.submit(Job(items, kind, source, size, done, surrogates))
        return await future


def _error(refusal: Refusal) -> JSONResponse:
    content: dict[str, Any] = {"success": False, "code": refusal.code, "message": refusal.message}
    if isinstance(refusal.details, dict):
        content.update(refusal.details)
    headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else None
    if refusal.status == 401:
        headers = {"WWW-Authenticate": 'Basic realm="cdp-tiktok"'}
    return JSONResponse(content, status_code=refusal.status, headers=headers)


def _items(body: Any, endpoint: Endpoint, max_messages: int) -> Sequence[Any]:
    if not endpoint.is_batch:
        return [body]
    if not isinstance(body, dict):
        raise Refusal(400, "invalid_batch", 'a batch body is an object {"batch": [...]}')
    try:
        items = expand_batch(body)
    except MessageError as exc:
        raise Refusal(
            400,
            "invalid_batch",
            f"invalid batch envelope: {exc}",
            details={
                "errors": [{"field": e.pointer or "/", "reason": e.reason} for e in exc.errors]
            },
        ) from None
    if len(items) > max_messages:
        raise Refusal(400, "too_many_messages", f"a batch holds at most {max_messages} messages")
    return items


def _outcome(result: JobResult, endpoint: Endpoint, total: int) -> JSONResponse:
    if result.refusal is not None:
        return _error(result.refusal)
    if not result.rejected:
        return JSONResponse({"success": True})
    rejected = [r.as_json() for r in result.rejected]
    first = result.rejected[0]
    reasons = "; ".join(str(e) for e in first.errors)
    if endpoint.is_batch:
        message = (
            f"{len(rejected)} of {total} messages refused, the others accepted "
            f"(first: /batch/{first.index}: {reasons})"
        )
        code = "invalid_messages"
    else:
        message, code = f"invalid message: {reasons}", "invalid_message"
    return JSONResponse(
        {
            "success": False,
            "code": code,
            "message": message,
            "accepted": result.accepted,
            "rejected": rejected,
        },
        status_code=400,
    )


async def _ingest(service: IntakeService, endpoint: Endpoint, request: Request) -> Response:
    started = time.perf_counter()
    limits = service.config.limits
    keys = service.config.write_keys
    source = keys.source(basic_user(request.headers.get("authorization")))
    size, count, events = 0, 0, 0
    try:
        try:
            limit = limits.max_batch_bytes if endpoint.is_batch else limits.max_message_bytes
            raw = await read_limited(request.stream(), limit)
            data = decompress(raw, request.headers.get("content-encoding"), limit)
            size = len(data)
            body, surrogates = read_json(data)
        except Refusal:
            if source is None:
                raise _unauthorized() from None
            raise
        if source is None:
            given = body.get("writeKey") if isinstance(body, dict) else None
            source = keys.source(given if isinstance(given, str) else None)
            if source is None:
                raise _unauthorized()
        items = _items(body, endpoint, limits.max_batch_messages)
        count = len(items)
        result = await service.run(items, endpoint.kind, source, size, surrogates=surrogates)
        events = result.events
        response = _outcome(result, endpoint, count)
    except Refusal as refusal:  # refused before the pipeline took the job (it counts its own)
        service.metrics.refused.labels(refusal.code).inc(max(1, count))
        response = _error(refusal)
    service.metrics.requests.labels(endpoint.path, str(response.status_code)).inc()
    access_log.info(
        "method=POST path=%s status=%d bytes=%d messages=%d events=%d source=%s ms=%.1f",
        endpoint.path,
        response.status_code,
        size,
        count,
        events,
        source or "-",
        (time.perf_counter() - started) * 1000.0,
    )
    return response


def _post_route(service: IntakeService, endpoint: Endpoint) -> Route:
    async def handler(request: Request) -> Response:
        return await _ingest(service, endpoint, request)

    return Route(endpoint.path, handler, methods=["POST"], name=endpoint.path)


def _get_routes(service: IntakeService) -> list[BaseRoute]:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        problems = await asyncio.to_thread(service.readiness)
        if problems:
            return JSONResponse({"ready": False, "problems": problems}, status_code=503)
        return JSONResponse({"ready": True})

    async def metrics(request: Request) -> Response:
        text = await asyncio.to_thread(service.metrics.render)
        return Response(text, media_type=CONTENT_TYPE)

    return [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def create_app(service: IntakeService) -> Starlette:
    """The intake application for ``service``.

    Guarantees: ``{"success": true}`` only after every message of the request is
    validated, mapped, hashed and committed to the outbox; a refused request or message
    enqueues nothing; 503 with ``Retry-After`` under backlog or when the outbox fails;
    no answer or log line contains a write key, a body or a raw identifier.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.pipeline.start()
        for start in service.on_start:
            start()
        try:
            yield
        finally:
            for stop in service.on_stop:
                await asyncio.to_thread(stop)
            await asyncio.to_thread(service.pipeline.stop)

    routes: list[BaseRoute] = [_post_route(service, e) for e in ENDPOINTS]
    routes.extend(_get_routes(service))
    middleware = []
    origins = list(service.config.limits.cors_origins)
    if origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["POST"],
                allow_headers=["Authorization", "Content-Type", "Content-Encoding"],
                max_age=600,
            )
        )
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
