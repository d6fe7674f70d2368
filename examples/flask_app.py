"""A Flask app that enqueues one job per request, under any WSGI server.

    ROGER_PARTITION=myapp gunicorn --preload --workers 2 --threads 8 examples.flask_app:app

The SyncClient is made once, at import, from the ROGER_* variables, and shared by every request
thread of the process. With `--preload` the import runs in gunicorn's master, before it forks
its workers: each worker then opens its own connection on its first request (the client forgets
the master's after a fork). Making it costs nothing; `ensure_partition` below is the app's one
start-up call to the cluster (it never changes a partition an operator set).
"""

from __future__ import annotations

from flask import Flask, request

from examples.jobs import SendWelcome
from roger_cluster import SyncClient

roger = SyncClient.from_env()  # one per process; thread-safe; its default partition: ROGER_PARTITION
if roger.default_partition is not None:
    roger.ensure_partition(roger.default_partition, {"default": 10})

app = Flask(__name__)


@app.post("/signup")
def signup() -> tuple[dict[str, str], int]:
    """Create the account (not shown), then enqueue its welcome mail; 202 with the job id."""
    email = str((request.get_json(silent=True) or {}).get("email", ""))
    if "@" not in email:
        return {"error": "an email address is needed"}, 400
    job_id = roger.enqueue(SendWelcome.create({"email": email}))  # returns once RabbitMQ has it
    return {"job": job_id}, 202


@app.get("/healthz")
def healthz() -> tuple[str, int]:
    return "ok", 200
