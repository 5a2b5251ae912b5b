"""Running async test bodies (Channels communicators) from sync tests, whatever ran before."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.db import connections


def run_async(coroutine_function):
    """Run an async test body on a fresh loop in its own thread: after a browser test, this worker's
    main thread already has Playwright's loop running, where async_to_sync refuses to work."""

    async def body_then_close_connections():
        try:
            return await coroutine_function()
        finally:
            # The consumer's database work ran in asgiref's shared thread; close what it opened
            # there, or PostgreSQL refuses to drop the test database at the end of the run.
            await sync_to_async(connections.close_all)()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, body_then_close_connections()).result()
