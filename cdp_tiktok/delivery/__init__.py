"""Durable delivery of outgoing events to TikTok.

* :mod:`.outbox` — the :class:`~.outbox.Outbox` contract and its record types; one module
  per backend (:mod:`.sqlite_outbox`, :mod:`.memory_outbox`, :mod:`.postgres_outbox`),
  found by url scheme through :func:`cdp_tiktok.backends.open_outbox`.
* The batcher, retry policy, sender and worker read from an outbox, send batches and
  settle every record as delivered, retry or dead letter.
"""
