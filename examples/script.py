"""A plain script (or a notebook cell): enqueue a few jobs and exit.

    ROGER_PARTITION=myapp python -m examples.script a@example.com b@example.com

`with SyncClient.from_env() as roger:` closes the connection at the end; no asyncio needed.
"""

from __future__ import annotations

import sys

from examples.jobs import SendWelcome
from roger_cluster import SyncClient


def main(emails: list[str]) -> int:
    with SyncClient.from_env() as roger:
        ids = roger.enqueue_many([SendWelcome.create({"email": email}) for email in emails])
    for email, job_id in zip(emails, ids, strict=True):
        print(f"{job_id} {email}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
