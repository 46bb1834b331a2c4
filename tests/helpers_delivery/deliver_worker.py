"""A delivery worker process for the crash test: ``python -m tests.helpers_delivery.deliver_worker
OUTBOX_PATH ENDPOINT LEASE_SECONDS WORKER_ID``; drains the outbox to the endpoint."""

from __future__ import annotations

import sys

from cdp_tiktok.backends import open_outbox
from cdp_tiktok.delivery.retry import RetryPolicy
from cdp_tiktok.delivery.worker import Deliverer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN
from tests.helpers_delivery import DESTINATION, settings_for


def main(path: str, endpoint: str, lease: float, worker: str) -> None:
    outbox = open_outbox(f"sqlite:///{path}")
    settings = settings_for(
        endpoint, access_token=SANDBOX_ACCESS_TOKEN, batch_max_events=100, concurrency=2
    )
    report = Deliverer(
        outbox,
        {DESTINATION: settings},
        worker_id=worker,
        lease_seconds=lease,
        retry_policy=RetryPolicy(base_delay=0.01, max_delay=0.1),
    ).run(drain=True)
    print(f"delivered={report.delivered} dead={report.dead}", flush=True)
    outbox.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4])
