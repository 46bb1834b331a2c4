"""Where the default mapping files live inside the installed package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from cdp_tiktok.settings import TikTokSettings


def default_mapping_dir() -> Path:
    """The packaged default mappings (``cdp_tiktok/mappings/default``).

    The repository's top-level ``mappings/`` directory holds an identical, editable copy
    (a test keeps the two equal).
    """
    return Path(str(resources.files("cdp_tiktok").joinpath("mappings", "default")))


def mapping_dirs(settings: TikTokSettings, extra: list[Path] | tuple[Path, ...] = ()) -> list[Path]:
    """The directories a destination loads: ``settings.mappings`` (or the packaged
    defaults) followed by directories registered by plugins."""
    base = settings.mappings if settings.mappings is not None else default_mapping_dir()
    return [Path(base), *(Path(p) for p in extra)]
