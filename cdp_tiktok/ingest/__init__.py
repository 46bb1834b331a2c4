"""The HTTP intake: Segment's Tracking API in front of the host and the outbox.

``cdp-tiktok serve`` runs :func:`cdp_tiktok.ingest.app.create_app`. Requests are
authenticated by write key (:mod:`.auth`), read and decoded within size limits
(:mod:`.body`), validated, mapped and durably enqueued by one pipeline thread
(:mod:`.pipeline`) before the answer is sent. Nothing below this package imports it.
"""
