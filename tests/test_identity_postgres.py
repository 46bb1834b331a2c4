"""The PostgreSQL identity store shared by separate processes (one identify, one track).

Two separate Python processes, each with its own ``Host`` on the same database; the same
through two real ``serve`` processes over HTTP is tests/test_serve_postgres.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg

from cdp_tiktok.matchkeys import sha256_hex
from tests.pg import fresh_database

REPO = Path(__file__).resolve().parents[1]
EMAIL = "Shared.Person@Example.com"
PHONE = "+1 213 373 4253"

IDENTIFY = """
    import sys
    from cdp_tiktok.host import Host
    from cdp_tiktok.settings import TikTokSettings
    settings = TikTokSettings(event_source_id="CSHAREDPIXEL00000001")
    with Host(settings, identity=sys.argv[1], load_entry_points=False) as host:
        host.identify(user_id="user-77", traits={"email": sys.argv[2], "phone": sys.argv[3]})
"""
TRACK = """
    import json, sys
    from cdp_tiktok.host import Host
    from cdp_tiktok.settings import TikTokSettings
    settings = TikTokSettings(event_source_id="CSHAREDPIXEL00000001",
                              default_page_url="https://shop.example/")
    with Host(settings, identity=sys.argv[1], load_entry_points=False) as host:
        events = host.track(user_id="user-77", event="Order Completed",
                            properties={"order_id": "o-1", "total": 3, "currency": "EUR"},
                            timestamp="2030-01-01T00:00:00Z")
        print(json.dumps([e.data["user"] for e in events]))
"""


def _python(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_identify_in_one_process_enriches_a_track_in_another() -> None:
    with fresh_database() as url:
        _python(IDENTIFY, url, EMAIL, PHONE)
        users = json.loads(_python(TRACK, url))
        with psycopg.connect(url) as conn:
            dump = str(conn.execute("SELECT * FROM cdp_identity_keys").fetchall())
            dump += str(conn.execute("SELECT * FROM cdp_identity_links").fetchall())
    assert users, "the track produced no event"
    assert users[0]["email"] == [sha256_hex(EMAIL.lower())]
    assert users[0]["phone"] == [sha256_hex("+12133734253")]
    assert sha256_hex(EMAIL.lower()) in dump
    for raw in (EMAIL.lower(), "2133734253", "user-77"):
        assert raw not in dump.lower()


def test_a_password_in_the_url_is_refused_without_echoing_it() -> None:
    import pytest

    from cdp_tiktok.backends import open_identity_store, open_outbox

    url = "postgresql://postgres:hunter2@127.0.0.1:5432/postgres"
    for opener in (open_outbox, lambda u: open_identity_store(u, 60.0)):
        with pytest.raises(ValueError) as info:
            opener(url)
        assert "PGPASSWORD" in str(info.value) and "hunter2" not in str(info.value)


def test_outbox_and_identity_store_share_one_database_with_recorded_versions() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from cdp_tiktok.backends import open_identity_store, open_outbox

    with fresh_database() as url:
        with ThreadPoolExecutor(4) as pool:  # concurrent first starts create the schema once
            stores = list(
                pool.map(
                    lambda n: open_outbox(url) if n % 2 else open_identity_store(url, 60.0),
                    range(4),
                )
            )
        for store in stores:
            store.close()
        with psycopg.connect(url) as conn:
            versions = dict(conn.execute("SELECT component, version FROM cdp_schema_versions"))
    assert versions == {"outbox": 1, "identity": 1}
