"""Django: where the client lives, and enqueueing on commit.

The client: one `SyncClient.from_env()` per process, made at import in a module of your project
(here, `roger` below; in a project, `myproject/roger.py`), imported wherever a view enqueues.
Making it does no I/O, so importing it at start-up (or in `AppConfig.ready`, to ensure the
partition once) is cheap, and it is fork-safe under gunicorn or uWSGI preload.

Enqueue in `transaction.on_commit`: a job enqueued inside the transaction could run on a node
before the row it reads is committed (it would not find it), or after the transaction rolled
back (for an account that does not exist). `on_commit` enqueues once the commit is done and
never after a rollback.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse

from examples.jobs import SendWelcome
from roger_cluster import SyncClient

roger = SyncClient.from_env()  # myproject/roger.py; ROGER_PARTITION names the app's partition


def signup(request: HttpRequest) -> JsonResponse:
    """Create the account and enqueue its welcome mail once the account is committed."""
    email = request.POST.get("email", "")
    with transaction.atomic():
        with connection.cursor() as cursor:  # Account.objects.create(email=email) in a real app
            cursor.execute("INSERT INTO account (email) VALUES (%s)", [email])
        transaction.on_commit(lambda: roger.enqueue(SendWelcome.create({"email": email})))
    return JsonResponse({"email": email}, status=201)
