"""A real aiohttp server for a test: routes in, base URL out, cleaned up after."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from els.broker import free_port


@contextlib.asynccontextmanager
async def serving(routes: dict[str, object]) -> AsyncIterator[str]:
    """Serve GET `path -> handler` on 127.0.0.1 and yield "http://127.0.0.1:<port>"."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
