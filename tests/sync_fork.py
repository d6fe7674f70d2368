"""Run by tests/integration/test_sync_client.py: a SyncClient used, then a fork, then both sides use it.

The parent makes a SyncClient from the environment (ROGER_*), enqueues a job and lists the nodes
(so its AMQP connection and etcd channel are open), forks, and both processes enqueue again and
list the nodes. It prints one JSON line per process: which loop thread served it, and whether the
child started a new one. Exit status 0 only if both sides worked.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from roger_cluster import SyncClient
from roger_cluster import sync_client as sync_module
from tests.jobs import Record


def use(roger: SyncClient, ledger: str, who: str) -> dict[str, object]:
    job_id = roger.enqueue(Record.create({"ledger": ledger, "who": who}))
    nodes = [n.name for n in roger.nodes()]
    loop = roger._loop
    assert loop is not None
    return {"who": who, "pid": os.getpid(), "job": job_id, "nodes": nodes, "thread": id(loop.thread)}


def main() -> int:
    ledger = sys.argv[1]
    roger = SyncClient.from_env()
    before = use(roger, ledger, "parent-before")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child = use(roger, ledger, "child")
            child["orphans"] = len(sync_module._ORPHANS)
            child["fresh"] = child["thread"] != before["thread"] and roger._loop not in sync_module._ORPHANS
            child["threads"] = [t.name for t in threading.enumerate()]
            print(json.dumps(child), flush=True)
            roger.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    after = use(roger, ledger, "parent-after")
    after["same"] = after["thread"] == before["thread"]
    print(json.dumps(before), flush=True)
    print(json.dumps(after), flush=True)
    roger.close()
    return 0 if os.waitstatus_to_exitcode(status) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
