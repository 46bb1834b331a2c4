"""A local, faithful TikTok Events API for development, tests and benchmarks.

:class:`SandboxServer` serves ``POST /open_api/v1.3/event/track/`` on loopback as
TikTok documents it (``Access-Token`` check, request validation, answers with HTTP 200
and a body ``code``), records accepted events, and injects faults on demand (throttling,
gateway errors, dropped connections, latency, poisoned events). See docs/sandbox.md.
"""

from cdp_tiktok.sandbox.server import SandboxServer
from cdp_tiktok.sandbox.state import SandboxStats

__all__ = ["SandboxServer", "SandboxStats"]
