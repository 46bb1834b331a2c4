"""The mapping language: YAML files of rules that turn Segment messages into TikTok events.

Public API: :func:`load_mapping_set` (compile once, raise :class:`MappingLoadError` on
errors), :meth:`MappingSet.map` (one message -> :class:`~cdp_tiktok.events.MapResult`),
:func:`validate_directory` (every problem, for ``cdp-tiktok validate``) and
:func:`default_mapping_dir` (the packaged default mappings). The language is described
for users in ``docs/mapping.md``.
"""

from cdp_tiktok.mapping.defaults import default_mapping_dir
from cdp_tiktok.mapping.engine import MappingSet, load_mapping_set, validate_directory
from cdp_tiktok.mapping.problems import MappingLoadError, Problem

__all__ = [
    "MappingLoadError",
    "MappingSet",
    "Problem",
    "default_mapping_dir",
    "load_mapping_set",
    "validate_directory",
]
