"""The floor of this stack: a bare aiohttp byte relay on uvloop with one shared ClientSession.

Run: python -m bench.relay --upstream http://127.0.0.1:PORT --port N
It prints one line as it starts: `relay: <event loop class>`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import aiohttp
import uvloop
from aiohttp import web

_UPSTREAM = web.AppKey("upstream", str)
_SESSION = web.AppKey("session", aiohttp.ClientSession)


async def relay(request: web.Request) -> web.StreamResponse:
    """Forward the body; stream an event-stream answer chunk by chunk, return others whole."""
    session = request.app[_SESSION]
    body = await request.read()
    headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
    url = request.app[_UPSTREAM] + request.path_qs
    async with session.request(request.method, url, data=body, headers=headers) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/json")
        if not content_type.startswith("text/event-stream"):
            payload = await upstream.read()
            return web.Response(status=upstream.status, body=payload, content_type=content_type)
        response = web.StreamResponse(status=upstream.status)
        response.content_type = "text/event-stream"
        with contextlib.suppress(ConnectionResetError):  # the client left: drop the upstream too
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        return response


async def _open_session(app: web.Application) -> None:
    app[_SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def _close_session(app: web.Application) -> None:
    await app[_SESSION].close()


def loop_name() -> str:
    """The running event loop's class, as `module.Class`: the run's report shows it."""
    loop = type(asyncio.get_running_loop())
    return f"{loop.__module__}.{loop.__qualname__}"


async def _announce(app: web.Application) -> None:
    print(f"relay: {loop_name()}", flush=True)


def make_app(upstream: str) -> web.Application:
    """The relay in front of `upstream` (scheme, host and port; request paths are kept)."""
    app = web.Application()
    app[_UPSTREAM] = upstream.rstrip("/")
    app.on_startup.append(_open_session)
    app.on_startup.append(_announce)
    app.on_cleanup.append(_close_session)
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(
        make_app(args.upstream),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
