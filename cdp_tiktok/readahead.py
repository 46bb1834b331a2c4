"""Reading, parsing and validating a file in a process of its own (``map``, ``send``).

:func:`read_ahead` yields exactly what :func:`~cdp_tiktok.jsonstream.iter_messages`
yields for the same input (property-tested): ``(line, message)`` with ``message`` a
validated message or a :class:`~cdp_tiktok.messages.MessageError`, in input order, and
it raises what reading raises. For a regular file it forks a child that does the reading,
JSON decoding and validation, so the command's own process only maps: the two share the
machine's cores instead of one doing both. The child hands each validated message over
as orjson bytes (decoded again here, several times cheaper than validating), or, when
orjson would not give the same value back (an integer beyond 64 bits, a lone surrogate,
NaN or an infinity), as the object itself; batches of :data:`BATCH` messages through one
pipe, so the child is at most a pipe buffer ahead.

Anything else (standard input, a pipe: a live stream, whose messages must be mapped as
they arrive) is read in this process, by ``iter_messages`` itself. The child ignores
Ctrl-C (the parent decides), ends when the parent stops reading (the pipe closes) and
leaves with ``os._exit``, touching nothing it inherited.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import multiprocessing
import os
import signal
import stat
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any, Final

import orjson

from cdp_tiktok.jsonstream import MAX_MESSAGE_BYTES, Readable, iter_messages
from cdp_tiktok.messages import FieldError, MessageError

BATCH: Final = 256
"""Messages per hand-over."""
PIPE_BYTES: Final = 1 << 20
"""What the pipe holds (about 1,300 messages of the benchmark: 30 ms of mapping)."""

_JOIN_SECONDS: Final = 5.0

Item = tuple[int, dict[str, Any] | MessageError]


def read_ahead(
    stream: Readable, source: str, *, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> Iterator[Item]:
    """What ``iter_messages(stream, source, max_message_bytes=...)`` yields, read in a
    child process when ``stream`` is a regular file (see the module docstring)."""
    if not _regular_file(stream):
        yield from iter_messages(stream, source, max_message_bytes=max_message_bytes)
        return
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    _widen(send)
    child = context.Process(
        target=_child_main,
        args=(send, receive, stream, source, max_message_bytes),
        name="cdp-tiktok-read",
        daemon=True,
    )
    gc.freeze()  # the child's collector never looks at (or frees) what it inherited
    try:
        child.start()
    finally:
        gc.unfreeze()
    send.close()
    try:
        yield from _received(receive, source)
    finally:
        receive.close()  # a child still writing gets a broken pipe and leaves
        child.join(_JOIN_SECONDS)
        if child.is_alive():
            child.kill()
            child.join()


def _widen(conn: Connection) -> None:
    """Let the pipe hold :data:`PIPE_BYTES` (Linux; elsewhere its default): slack for
    the child to be descheduled a while without the command running dry."""
    command = getattr(fcntl, "F_SETPIPE_SZ", None)
    if command is not None:
        with contextlib.suppress(OSError):  # over the system's limit: keep the default
            fcntl.fcntl(conn.fileno(), command, PIPE_BYTES)


def _regular_file(stream: Readable) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # no descriptor: an in-memory stream
        return False


def _received(receive: Connection, source: str) -> Iterator[Item]:
    loads = orjson.loads
    while True:
        try:
            kind, payload = receive.recv()
        except EOFError:  # the child died without a word (killed: out of memory?)
            raise OSError(f"{source}: the process reading it ended unexpectedly") from None
        if kind == "raise":
            raise payload
        if kind == "end":
            return
        for line, encoded, value in payload:
            if encoded is not None:
                yield line, loads(encoded)
            elif value.__class__ is tuple:  # a MessageError: (errors, line, source)
                errors, at, where = value
                yield line, MessageError([FieldError(*e) for e in errors], line=at, source=where)
            else:
                yield line, value


def _handed(item: Item) -> tuple[int, bytes | None, Any]:
    """One item as it crosses the pipe: the message's orjson bytes where decoding them
    gives the very same value, else the message (or the error's fields) itself."""
    line, message = item
    if isinstance(message, MessageError):
        errors = [(e.pointer, e.reason) for e in message.errors]
        return line, None, (errors, message.line, message.source)
    try:
        encoded = orjson.dumps(message)
    except TypeError:  # an integer beyond 64 bits, a lone surrogate, ...
        return line, None, message
    if b"null" in encoded:  # orjson writes NaN and the infinities as null
        return line, None, message
    return line, encoded, None


def _child_main(
    send: Connection,
    receive: Connection,
    stream: Readable,
    source: str,
    max_message_bytes: int,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
    receive.close()
    try:
        batch: list[tuple[int, bytes | None, Any]] = []
        for item in iter_messages(stream, source, max_message_bytes=max_message_bytes):
            batch.append(_handed(item))
            if len(batch) >= BATCH:
                send.send(("items", batch))
                batch = []
        if batch:
            send.send(("items", batch))
        send.send(("end", None))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent stopped reading
    except BaseException as exc:  # what reading raised: raised again in the parent
        with contextlib.suppress(Exception):
            try:
                send.send(("raise", exc))
            except Exception:  # not picklable: its words
                send.send(("raise", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        os._exit(0)
