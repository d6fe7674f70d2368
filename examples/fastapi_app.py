"""FastAPI (any asyncio app): the async Client, opened and closed by the app's lifespan.

    ROGER_PARTITION=myapp uvicorn examples.fastapi_app:app

An asyncio app uses `Client`, not `SyncClient`: its calls are awaited in the app's own loop,
with no thread in between. One client per process, opened in the lifespan (before the first
request) and closed after the last; the routes find it on `app.state`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from pydantic import BaseModel

from examples.jobs import SendWelcome
from roger_cluster import Client


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with Client.from_env() as roger:  # ROGER_* variables; ROGER_PARTITION: the default partition
        if roger.default_partition is not None:
            await roger.ensure_partition(roger.default_partition, {"default": 10})
        app.state.roger = roger
        yield


app = FastAPI(lifespan=lifespan)


class Signup(BaseModel):
    email: str


@app.post("/signup", status_code=202)
async def signup(body: Signup, request: Request) -> dict[str, str]:
    """Enqueue the welcome mail; answers once RabbitMQ has the job."""
    roger: Client = request.app.state.roger
    job_id = await roger.enqueue(SendWelcome.create({"email": body.email}))
    return {"job": job_id}
