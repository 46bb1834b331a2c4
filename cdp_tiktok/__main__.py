"""``python -m cdp_tiktok``: the ``cdp-tiktok`` command line."""

from cdp_tiktok.cli import main

if __name__ == "__main__":
    main(prog_name="cdp-tiktok")
