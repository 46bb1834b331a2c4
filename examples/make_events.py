"""Regenerate ``examples/events.jsonl``: a few hundred realistic Segment-spec messages.

Deterministic (fixed seed), so the shipped file only changes when this script does:

    python examples/make_events.py > examples/events.jsonl

The messages carry no ``timestamp``: like a call that Segment receives now, each event
takes the time it is read, so ``cdp-tiktok send examples/events.jsonl --sandbox`` sends
fresh events on any date (fixed timestamps would be older than TikTok's 7-day window a
week after they were written, and every run would warn that all events are stale).
"""

from __future__ import annotations

import json
import random
import sys
import uuid
from typing import Any

SEED = 20261125
PRODUCTS = [
    {
        "product_id": "507f1f77",
        "sku": "MUG-001",
        "name": "Enamel mug",
        "category": "Kitchen",
        "brand": "Northwind",
        "price": 12.5,
    },
    {
        "product_id": 40031,
        "sku": "TSH-RED-M",
        "name": "T-shirt red M",
        "category": "Apparel",
        "brand": "Kestrel",
        "price": 19.99,
    },
    {
        "product_id": "a3c9",
        "sku": "BAG-TOTE",
        "name": "Canvas tote",
        "category": "Bags",
        "brand": "Northwind",
        "price": 24.0,
    },
    {
        "product_id": 77,
        "sku": "SOCK-3P",
        "name": "Socks, 3 pairs",
        "category": "Apparel",
        "brand": "Kestrel",
        "price": "9.90",
    },
    {
        "product_id": "b-1002",
        "sku": "LAMP-DESK",
        "name": "Desk lamp",
        "category": "Home",
        "brand": "Lumen",
        "price": 49.0,
    },
]
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Perlman",
    "Berners-Lee",
]
PHONES = [
    "+1 (213) 373-4253",
    "020 7946 0018",
    "+33 6 12 34 56 78",
    "(415) 555-2671",
    "0049 30 901820",
]
REGIONS = ["US", "GB", "FR", "US", "DE"]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 "
    "Version/18.1 Safari/605.1.15",
]


def main() -> None:
    rng = random.Random(SEED)
    out: list[dict[str, Any]] = []

    def message(kind: str, user: dict[str, Any], **fields: Any) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": kind,
            "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "anonymousId": user["anonymous_id"],
            "context": dict(user["context"]),
        }
        if user.get("user_id"):
            msg["userId"] = user["user_id"]
        msg.update(fields)
        return msg

    for n in range(60):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        phone_index = rng.randrange(len(PHONES))
        landing = (
            f"https://shop.example/landing?utm_source=tiktok&ttclid=E.C.P.{rng.getrandbits(48):x}"
        )
        user = {
            "anonymous_id": f"anon-{rng.getrandbits(40):010x}",
            "user_id": f"user_{1000 + n}" if rng.random() < 0.8 else None,
            "context": {
                "ip": f"203.0.113.{rng.randint(1, 254)}"
                if rng.random() < 0.85
                else f"2001:db8::{rng.randint(1, 0xFFFF):x}",
                "userAgent": rng.choice(AGENTS),
                "locale": rng.choice(["en-US", "en-GB", "fr-FR", "de-DE"]),
                "page": {
                    "url": landing,
                    "referrer": "https://www.tiktok.com/",
                    "path": "/landing",
                    "title": "Shop",
                },
            },
        }
        email = f"  {first}.{last}{n}@Example.COM "
        out.append(
            message("page", user, name="Landing", properties={"url": landing, "path": "/landing"})
        )
        if user["user_id"]:
            out.append(
                message(
                    "identify",
                    user,
                    traits={
                        "email": email,
                        "phone": PHONES[phone_index],
                        "firstName": first,
                        "lastName": last,
                        "address": {
                            "city": "Springfield",
                            "postalCode": f"{rng.randint(10000, 99999)}",
                            "country": REGIONS[phone_index],
                        },
                    },
                )
            )
        cart = rng.sample(PRODUCTS, rng.randint(1, 3))
        out.append(
            message(
                "track",
                user,
                event="Products Searched",
                properties={"query": rng.choice(["mug", "red shirt", "lamp"])},
            )
        )
        for product in cart:
            out.append(
                message(
                    "track", user, event="Product Viewed", properties={**product, "currency": "eur"}
                )
            )
            out.append(
                message(
                    "track",
                    user,
                    event="Product Added",
                    properties={**product, "quantity": rng.randint(1, 3), "cart_id": f"cart-{n}"},
                )
            )
        if rng.random() < 0.3:
            out.append(
                message("track", user, event="Product Added to Wishlist", properties=dict(cart[0]))
            )
        if rng.random() < 0.7:
            products = [{**p, "quantity": rng.randint(1, 3)} for p in cart]
            revenue = round(sum(float(p["price"]) * p["quantity"] for p in products), 2)
            out.append(
                message(
                    "track",
                    user,
                    event="Checkout Started",
                    properties={"value": revenue, "currency": "EUR", "products": products},
                )
            )
            out.append(
                message(
                    "track",
                    user,
                    event="Payment Info Entered",
                    properties={"checkout_id": f"chk-{n}", "payment_method": "card"},
                )
            )
            order = {
                "order_id": f"A-{5000 + n}",
                "revenue": revenue,
                "total": round(revenue + 4.95, 2),
                "currency": "EUR",
                "products": products,
            }
            if rng.random() < 0.2:
                order["revenue"] = 0  # a free order: value 0 must still be sent
            out.append(message("track", user, event="Order Completed", properties=order))
        if rng.random() < 0.15:
            out.append(
                message(
                    "track", user, event="Order Refunded", properties={"order_id": f"A-{5000 + n}"}
                )
            )
        if rng.random() < 0.2:
            out.append(
                message(
                    "track",
                    user,
                    event="Signed Up",
                    properties={"email": email.strip(), "first_name": first},
                )
            )
        if rng.random() < 0.1:
            out.append(
                message(
                    "track",
                    user,
                    event="Trial Started",
                    properties={"trial_plan_name": "pro", "value": 0, "currency": "usd"},
                )
            )
        if rng.random() < 0.1:
            out.append(
                message(
                    "group",
                    user,
                    groupId=f"acct-{n}",
                    traits={"name": f"{last} Ltd", "plan": "team"},
                )
            )
        if rng.random() < 0.1 and user["user_id"]:
            out.append(message("alias", user, previousId=user["anonymous_id"]))
        if rng.random() < 0.1:
            out.append(message("screen", user, name="Cart"))
        if rng.random() < 0.08:
            # a user who opted this message out of TikTok: it must not be sent
            out.append(
                message(
                    "track",
                    user,
                    event="Order Completed",
                    integrations={"TikTok": False},
                    properties={"order_id": f"B-{n}", "revenue": 10, "currency": "EUR"},
                )
            )
    for item in out:
        sys.stdout.write(json.dumps(item, separators=(",", ":"), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
