"""The aiohttp application: routes, the shared upstream session, and the per-request frame."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from diglot.proxy import compaction, conversations, handlers, health, stored_responses
from diglot.proxy.auth import EXEMPT_PATHS, ClientKeys, check_client_key, install_client_auth
from diglot.proxy.background import cancel_response, install_background
from diglot.proxy.config import Config
from diglot.proxy.conversation import install_store, open_state
from diglot.proxy.health import install_health
from diglot.proxy.limits import Overloaded
from diglot.proxy.metrics import Metrics, install_metrics, install_router_metrics, scrape
from diglot.proxy.observability import (
    CLIENT_GONE,
    CURRENT_RECORD,
    RequestLog,
    get_logger,
    request_line_writer,
)
from diglot.proxy.replies import json_response
from diglot.proxy.routing import Router
from diglot.proxy.state import PROXY, RECORD, Proxy
from diglot.proxy.token_counts import InputTokens
from diglot.proxy.upstream import REQUEST_ID
from diglot.proxy.websocket import install_sockets, serve_socket, socket_runner, wants_websocket
from diglot.translators.errors import ErrorBody, RequestError, error_body
from diglot.translators.ids import REQUEST_PREFIX, IdMint
from diglot.translators.responses_models import ToolShelf

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = get_logger()
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_UNMATCHED = "unmatched"


def create_app(config: Config) -> web.Application:
    """One app per process; the upstreams' sessions open on startup and close on cleanup."""
    app = web.Application(client_max_size=config.max_body_bytes)
    router = Router(config)
    store, sealer = open_state(config)
    app[PROXY] = Proxy(
        config=config,
        options=config.options(),
        upstream=router.default,
        store=store,
        sealer=sealer,
        new_id=IdMint(),
        tool_shelf=ToolShelf(),
        router=router,
    )
    install_store(app, store, expire=router.keeps_state)

    async def open_upstreams(_: web.Application) -> None:
        await router.start()

    async def close_upstreams(_: web.Application) -> None:
        await router.close()

    app.on_startup.append(open_upstreams)
    app.on_cleanup.append(close_upstreams)
    keys = install_client_auth(app, config)
    install_health(app, config)
    metrics = install_metrics(app)
    install_background(app, store, metrics, config.drain_timeout, router.keeps_state)
    if config.upstreams:
        install_router_metrics(metrics, router)
    install_sockets(app, metrics)
    _add_routes(app.router, keys, metrics)
    return app


def _add_routes(router: web.UrlDispatcher, keys: ClientKeys | None, metrics: Metrics) -> None:
    """Every route inside the request frame; any other method or path is an OpenAI-shaped error."""
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/healthz", health.healthz),
        ("HEAD", "/healthz", health.healthz),
        ("GET", "/readyz", health.readyz),
        ("HEAD", "/readyz", health.readyz),
        ("GET", "/metrics", scrape),
    ]
    input_tokens = InputTokens()  # one per app: it remembers how the upstream counts
    for prefix in ("/v1", ""):
        stored = prefix + "/responses/{response_id}"
        talk = prefix + "/conversations/{conversation_id}"
        routes += [
            ("POST", prefix + "/responses", handlers.responses),
            ("POST", prefix + "/responses/compact", compaction.compact),  # before {response_id}
            ("GET", prefix + "/responses", _responses_socket),
            ("POST", prefix + "/chat/completions", handlers.chat_completions),
            ("GET", prefix + "/models", handlers.models),
            ("POST", prefix + "/responses/input_tokens", input_tokens),  # before {response_id}
            ("GET", stored, stored_responses.get_response),
            ("DELETE", stored, stored_responses.delete_response),
            ("GET", stored + "/input_items", stored_responses.list_input_items),
            ("POST", stored + "/cancel", cancel_response),
            ("POST", prefix + "/conversations", conversations.create_conversation),
            ("GET", talk, conversations.get_conversation),
            ("POST", talk, conversations.update_conversation),
            ("DELETE", talk, conversations.delete_conversation),
            ("GET", talk + "/items", conversations.list_items),
            ("POST", talk + "/items", conversations.add_items),
            ("GET", talk + "/items/{item_id}", conversations.get_item),
            ("DELETE", talk + "/items/{item_id}", conversations.delete_item),
        ]
    allowed: dict[str, list[str]] = {}
    for method, path, handler in routes:
        router.add_route(method, path, observed(handler, path, _auth(path, keys), metrics))
        allowed.setdefault(path, []).append(method)
    for path, methods in allowed.items():
        refusal = _not_allowed(methods)
        router.add_route("*", path, observed(refusal, path, _auth(path, keys), metrics))
    router.add_route("*", "/{tail:.*}", observed(_unknown_url, _UNMATCHED, keys, metrics))


def _auth(path: str, keys: ClientKeys | None) -> ClientKeys | None:
    """Health checks answer without a key."""
    return None if path in EXEMPT_PATHS else keys


def request_id(request: web.Request) -> str:
    """The client's x-request-id when it is a sane token, else a fresh one."""
    given = request.headers.get(REQUEST_ID)
    if given and _CLIENT_REQUEST_ID.fullmatch(given):
        return given
    return request.app[PROXY].new_id(REQUEST_PREFIX)


def observed(handler: Handler, route: str, keys: ClientKeys | None, metrics: Metrics) -> Handler:
    """`handler` inside the request frame: id, authentication, OpenAI-shaped errors, log, metrics.

    A wrapper per route rather than an aiohttp middleware, which would add two more coroutine
    frames to every step of every request. Logging is configured before the app is built, so
    whether and how request lines are written is settled once here, not per request.
    """
    write_line = request_line_writer() if log.is_enabled_for(logging.INFO) else None

    async def frame(request: web.Request) -> web.StreamResponse:
        record = RequestLog(request_id=request_id(request), started=time.perf_counter())
        request[RECORD] = record
        token = CURRENT_RECORD.set(record)
        status = 500
        try:
            try:
                if keys is not None:
                    check_client_key(request, keys)
                response = await handler(request)
            except RequestError as exc:
                response = _refusal(record, exc)
            except web.HTTPException as exc:
                record.error = exc.reason
                response = _error(record, exc.status, _http_error_body(exc))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unexpected_error", request_id=record.request_id)
                if request.writer is not None and request.writer.output_size > 0:
                    raise
                body = error_body(
                    "The server had an error processing your request.", "server_error"
                )
                response = _error(record, 500, body)
            status = response.status
            return response
        except asyncio.CancelledError:
            status = 499
            record.error = CLIENT_GONE
            raise
        finally:
            CURRENT_RECORD.reset(token)
            ended = time.perf_counter()
            record.first_byte = record.first_byte or ended  # an unstreamed answer goes out whole
            if record.transport == "http":  # a WebSocket's turns are requests of their own
                if write_line is not None:
                    write_line(request.method, request.path, record, status, ended)
                metrics.finished(route, record, status, ended)

    return frame


def _refusal(record: RequestLog, exc: RequestError) -> web.Response:
    """A request diglot refused, as an OpenAI error."""
    record.error = exc.code
    response = _error(record, exc.status, exc.body())
    if isinstance(exc, Overloaded):
        response.headers["Retry-After"] = exc.retry_after
    if isinstance(exc, MethodNotAllowed):
        response.headers["Allow"] = exc.allow
    return response


class MethodNotAllowed(RequestError):
    """405, with the methods the path does take."""

    def __init__(self, request: web.Request, allow: list[str]) -> None:
        message = f"Method {request.method} is not allowed on {request.path}"
        super().__init__(message, None, None, 405)
        self.allow = ",".join(sorted(allow))


def _not_allowed(allow: list[str]) -> Handler:
    async def not_allowed(request: web.Request) -> web.StreamResponse:
        raise MethodNotAllowed(request, allow)

    return not_allowed


async def _responses_socket(request: web.Request) -> web.StreamResponse:
    """GET of the Responses path is WebSocket mode's upgrade, and nothing else."""
    if not wants_websocket(request):
        raise MethodNotAllowed(request, ["POST"])
    return await serve_socket(request, socket_runner(request.app[PROXY].config))


async def _unknown_url(request: web.Request) -> web.StreamResponse:
    raise RequestError(f"Invalid URL ({request.method} {request.path})", None, "unknown_url", 404)


def _error(record: RequestLog, status: int, body: ErrorBody) -> web.Response:
    return json_response(body, status, {REQUEST_ID: record.request_id})


def _http_error_body(exc: web.HTTPException) -> ErrorBody:
    """An aiohttp error raised inside a handler (a body too large to read, ...)."""
    kind = "server_error" if exc.status >= 500 else "invalid_request_error"
    return error_body(exc.reason, kind)
