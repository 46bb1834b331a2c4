"""cdp_tiktok: a Segment-spec CDP destination for TikTok's Events API 2.0.

Public entry points: :data:`hookimpl` for plugin authors, :class:`~cdp_tiktok.host.Host`
for embedding the pipeline in Python.
"""

from cdp_tiktok.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
