"""``cdp-tiktok serve``: Segment's HTTP Tracking API in front of the outbox, with an
embedded delivery worker, health, readiness and Prometheus metrics."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click

from cdp_tiktok.cli.options import sandbox_settings, setting_options, settings_from_options

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_PORT = 8088


def _listen(host: str, port: int, *, share: bool = False) -> socket.socket:
    """A socket bound to ``host:port``; with ``share``, for worker processes that each
    listen on a socket of their own on the same address (see ``run_workers``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if share:
        from cdp_tiktok.ingest.workers import reuse_port

        reuse_port(sock)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    # httpx logs every delivery request at info; the service's own lines say enough.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


@click.command()
@setting_options
@click.option("--outbox", "outbox_url", help="Outbox URL. Env: CDP_TIKTOK_OUTBOX.")
@click.option("--endpoint", help="TikTok API base URL. Env: CDP_TIKTOK_ENDPOINT.")
@click.option("--identity", "identity_url", help="Identity store URL. Env: CDP_TIKTOK_IDENTITY.")
@click.option(
    "--sandbox", is_flag=True, help="Start an embedded local TikTok sandbox and deliver there."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on (0: any free port; the chosen one is printed).",
)
@click.option(
    "--write-key",
    "write_keys",
    multiple=True,
    help="A write key, as NAME=KEY (NAME labels metrics and logs) or a bare KEY; repeatable. "
    "Also write_keys in the settings file and CDP_TIKTOK_WRITE_KEYS (comma-separated).",
)
@click.option("--no-worker", is_flag=True, help="Run the intake alone (deliver with `worker`).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Intake processes on the one port (each with its own pipeline and, unless "
    "--no-worker, delivery worker); metrics are summed over them.",
)
@click.option(
    "--intake-message-bytes",
    type=int,
    help="Largest message over HTTP, in a batch too (default 32768; intake.max_message_bytes).",
)
@click.option(
    "--intake-batch-bytes",
    type=int,
    help="Largest HTTP request body (default 512000; intake.max_batch_bytes).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="A browser origin allowed to post directly (e.g. https://shop.example); repeatable.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default="info",
    show_default=True,
    help="One line per request at info; never bodies or keys.",
)
def serve(
    outbox_url: str | None,
    endpoint: str | None,
    identity_url: str | None,
    sandbox: bool,
    host: str,
    port: int,
    write_keys: tuple[str, ...],
    no_worker: bool,
    workers: int,
    intake_message_bytes: int | None,
    intake_batch_bytes: int | None,
    cors_origins: tuple[str, ...],
    log_level: str,
    **options: Any,
) -> None:
    """Accept Segment calls over HTTP (/v1/track, /v1/batch, ... and analytics.js's
    /v1/t, /v1/b, ...), map them and enqueue them durably before answering; deliver them
    from an embedded worker. GET /health, /ready and /metrics for operations.

    Settings are read once at start: changing the settings file needs a restart.
    """
    from cdp_tiktok.destinations import check_destinations, destination_settings
    from cdp_tiktok.ingest.config import load_intake_config
    from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN, Secret, SettingsError

    extra = {"outbox": outbox_url, "endpoint": endpoint, "identity": identity_url}
    settings = settings_from_options(options, **extra)
    settings_file: Path | None = options.get("settings_file")
    try:
        config = load_intake_config(
            file=settings_file,
            write_keys=write_keys,
            overrides={
                "max_message_bytes": intake_message_bytes,
                "max_batch_bytes": intake_batch_bytes,
                "cors_origins": cors_origins or None,
            },
        )
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    if not config.write_keys:
        raise click.UsageError(
            "no write key: pass --write-key, set CDP_TIKTOK_WRITE_KEYS, or list write_keys "
            "in the settings file"
        )
    token = Secret(SANDBOX_ACCESS_TOKEN) if sandbox else None
    if sandbox:
        settings = sandbox_settings(settings, outbox=outbox_url, identity=identity_url)
    try:
        check_destinations(settings, need_credentials=not (sandbox or no_worker))
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None

    _configure_logging(log_level)
    import uvicorn

    from cdp_tiktok.ingest.app import create_app
    from cdp_tiktok.ingest.gc_tuning import tune_for_serving
    from cdp_tiktok.ingest.service import open_service
    from cdp_tiktok.ingest.workers import (
        BALANCED,
        ServiceApp,
        forget_process,
        metrics_directory,
        run_workers,
    )
    from cdp_tiktok.mapping.problems import MappingLoadError

    with contextlib.ExitStack() as stack:
        if sandbox:
            from cdp_tiktok.sandbox.server import SandboxServer

            server = stack.enter_context(SandboxServer(access_token=SANDBOX_ACCESS_TOKEN))
            settings = dataclasses.replace(settings, endpoint=server.url)
        deliveries = destination_settings(settings, access_token=token)
        try:
            if workers == 1:
                service = open_service(settings, deliveries, config, stack, worker=not no_worker)
                service.on_start.append(tune_for_serving)
            else:  # each process opens its own; open once here so that errors stop the start
                metrics_dir = stack.enter_context(metrics_directory())
                with contextlib.ExitStack() as check:
                    open_service(settings, deliveries, config, check, worker=False)
                forget_process(metrics_dir, os.getpid())
        except MappingLoadError as exc:
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            raise SystemExit(2) from None
        except ValueError as exc:  # an unsupported outbox or identity url
            raise click.UsageError(str(exc)) from None
        except (OSError, RuntimeError, sqlite3.Error) as exc:  # a store that cannot be opened
            raise click.ClickException(f"cannot open the outbox or identity store: {exc}") from None
        sock = _listen(host, port, share=workers > 1 and BALANCED)
        stack.callback(sock.close)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        banner = (
            f"cdp-tiktok serve: listening on http://{shown}:{bound_port} "
            f"({len(config.write_keys)} write keys; destinations "
            f"{', '.join(sorted(deliveries))}; worker {'off' if no_worker else 'on'}"
            f"{f'; {workers} processes' if workers > 1 else ''})"
        )
        uvicorn_options: dict[str, Any] = {
            "log_config": None,
            "access_log": False,
            "log_level": log_level,
            "lifespan": "on",
            "timeout_graceful_shutdown": 10,
        }
        if workers > 1:
            app = ServiceApp(
                settings,
                deliveries,
                config,
                worker=not no_worker,
                prepare=functools.partial(_configure_logging, log_level),
            )
            run_workers(app, sock, workers, uvicorn_options, lambda: click.echo(banner, err=True))
            return

        class _Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                super().handle_exit(sig, frame)
                # SIGTERM/SIGINT ask for a graceful stop: exit 0 after it, not re-raised.
                self._captured_signals.clear()

            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets=sockets)
                if not self.should_exit:
                    click.echo(banner, err=True)

        _Server(uvicorn.Config(create_app(service), **uvicorn_options)).run(sockets=[sock])
