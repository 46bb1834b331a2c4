"""``python -m cdp_tiktok.sandbox``: the same as ``cdp-tiktok sandbox``."""

from cdp_tiktok.cli.sandbox import sandbox

if __name__ == "__main__":
    sandbox(prog_name="python -m cdp_tiktok.sandbox")
