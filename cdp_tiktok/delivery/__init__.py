"""Durable delivery of outgoing events to TikTok.

* :mod:`.outbox` — the :class:`~.outbox.Outbox` contract, its record types and
  :func:`~.outbox.open_outbox`; backends in :mod:`.sqlite_outbox` and :mod:`.memory_outbox`.
* The batcher, retry policy, sender and worker read from an outbox, send batches and
  settle every record as delivered, retry or dead letter.
"""
