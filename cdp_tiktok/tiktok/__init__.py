"""TikTok's Events API 2.0 as data: the event catalog, the request schema and builder,
and the classification of TikTok's answers.

* :mod:`cdp_tiktok.tiktok.catalog` — event names per ``event_source`` (``catalog.yaml``).
* :mod:`cdp_tiktok.tiktok.payload` — request envelope, encoding and validation
  (``request.schema.json``).
* :mod:`cdp_tiktok.tiktok.codes` — response code table and :func:`classify`.
"""
