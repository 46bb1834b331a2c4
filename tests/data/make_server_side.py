"""Write the server-side message files under tests/data/ (deterministic; re-run to refresh).

``server_side_events.jsonl``: 200 messages as a shop's backend sends them through a
Segment server library: no ``context.page``, often no ``context`` at all, event names
in the spelling backend developers use (``Order Completed``, ``order completed``,
``order_completed``, ``Order-Completed``), a few TikTok-shaped ``contents`` and
TikTok standard names (``ViewContent``, ``complete_payment``), national phone numbers
with an address country or only a locale.

``crm_leads.jsonl``: 50 lead events of a CRM (``event_source: crm``) carrying the TikTok
lead id in ``properties.lead_id`` or ``context.traits.lead_id``.

Usage: ``python tests/data/make_server_side.py``.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SPELLINGS = {
    "Order Completed": ["Order Completed", "order completed", "order_completed", "Order-Completed"],
    "Checkout Started": ["Checkout Started", "checkout started", "checkout_started"],
    "Signed Up": ["Signed Up", "signed_up", "signed up", "SIGNED UP"],
}
LIBRARIES = [
    {"name": "analytics-python", "version": "2.3.3"},
    {"name": "analytics-node", "version": "6.2.0"},
    {"name": "analytics-go", "version": "3.3.0"},
]
PRODUCTS = [
    ("SKU-MUG", "Mug", "Kitchen", 12.5),
    ("SKU-TEE", "T-Shirt", "Apparel", 19.0),
    ("SKU-CAP", "Cap", "Apparel", 14.99),
    ("SKU-PEN", "Pen", "Office", 2.25),
]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _time(rng: random.Random) -> str:
    return f"2026-11-20T{rng.randint(8, 20):02d}:{rng.randint(0, 59):02d}:00.000Z"


def _products(rng: random.Random) -> list[dict[str, Any]]:
    chosen = rng.sample(PRODUCTS, rng.randint(1, 3))
    return [
        {
            "product_id": sku,
            "name": name,
            "category": cat,
            "price": price,
            "quantity": rng.randint(1, 3),
        }
        for sku, name, cat, price in chosen
    ]


def _contents(products: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "content_id": p["product_id"],
            "content_name": p["name"],
            "content_category": p["category"],
            "price": p["price"],
            "quantity": p["quantity"],
        }
        for p in products
    ]


def _context(rng: random.Random, person: int) -> dict[str, Any] | None:
    shape = rng.random()
    if shape < 0.4:
        return None  # many server libraries send no context at all
    context: dict[str, Any] = {"library": rng.choice(LIBRARIES)}
    if shape < 0.7:
        context["traits"] = {
            "email": f"buyer{person}@example.com",
            "phone": f"(415) 555-{1000 + person:04d}",
            "address": {"country": "US"},
        }
    elif shape < 0.85:
        context["locale"] = rng.choice(["en-US", "fr-FR", "de-DE"])
        context["traits"] = {"phone": f"06 12 34 {person % 100:02d} {person % 97:02d}"}
    return context


def web_message(rng: random.Random, index: int) -> dict[str, Any]:
    person = rng.randint(1, 60)
    kind = rng.choices(
        ["Order Completed", "Checkout Started", "Signed Up", "standard"], [5, 3, 2, 1]
    )[0]
    properties: dict[str, Any] = {}
    if kind == "standard":
        event = rng.choice(["ViewContent", "viewcontent", "complete_payment", "add_to_cart"])
        products = _products(rng)
        properties["contents"] = _contents(products)
        properties["value"] = round(sum(p["price"] * p["quantity"] for p in products), 2)
        properties["currency"] = "USD"
    else:
        event = rng.choice(SPELLINGS[kind])
    if kind in ("Order Completed", "Checkout Started"):
        products = _products(rng)
        total = round(sum(p["price"] * p["quantity"] for p in products), 2)
        properties.update({"order_id": f"ORD-{10000 + index}", "revenue": total, "currency": "USD"})
        if rng.random() < 0.2:
            properties["contents"] = _contents(products)  # TikTok-shaped input
        else:
            properties["products"] = products
        if rng.random() < 0.3:
            properties["event_id"] = f"evt-{index}"  # the id the site's pixel also sent
    if rng.random() < 0.3:
        properties["email"] = f"Buyer{person}@Example.com"
    message: dict[str, Any] = {
        "type": "track",
        "event": event,
        "userId": f"user_{person}",
        "messageId": _uuid(rng),
        "timestamp": _time(rng),
        "properties": properties,
    }
    context = _context(rng, person)
    if context is not None:
        message["context"] = context
    return message


def crm_message(rng: random.Random, index: int) -> dict[str, Any]:
    lead_id = str(7_000_000_000_000_000_000 + index)
    message: dict[str, Any] = {
        "type": "track",
        "event": rng.choice(["Lead", "Signed Up", "lead", "complete_registration"]),
        "userId": f"crm-contact-{index}",
        "messageId": _uuid(rng),
        "timestamp": _time(rng),
        "properties": {"email": f"lead{index}@example.com"},
        "context": {"library": LIBRARIES[0]},
    }
    if index % 3 == 0:
        message["context"]["traits"] = {"lead_id": lead_id}
    else:
        message["properties"]["lead_id"] = lead_id
    return message


def main() -> None:
    """Write both files."""
    rng = random.Random(20261202)
    with (HERE / "server_side_events.jsonl").open("w", encoding="utf-8") as out:
        for index in range(200):
            out.write(json.dumps(web_message(rng, index), separators=(",", ":")) + "\n")
    with (HERE / "crm_leads.jsonl").open("w", encoding="utf-8") as out:
        for index in range(50):
            out.write(json.dumps(crm_message(rng, index), separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
