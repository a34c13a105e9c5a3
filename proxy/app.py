"""The aiohttp application: routes, the shared upstream session, and the request middleware."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy import handlers, stored_responses
from proxy.auth import install_client_auth
from proxy.config import Config
from proxy.conversation import install_store, open_state
from proxy.health import install_health
from proxy.ids import IdMint
from proxy.limits import Overloaded
from proxy.metrics import install_metrics, observe_request
from proxy.observability import CLIENT_GONE, CURRENT_RECORD, RequestLog, get_logger
from proxy.replies import json_response
from proxy.state import PROXY, RECORD, Proxy
from proxy.upstream import REQUEST_ID, Upstream
from translators.errors import RequestError, error_body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = get_logger()
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def create_app(config: Config) -> web.Application:
    """One app per process; the upstream session opens on startup and closes on cleanup."""
    app = web.Application(middlewares=[observe], client_max_size=config.max_body_bytes)
    upstream = Upstream(config)
    store, sealer = open_state(config)
    app[PROXY] = Proxy(
        config=config,
        options=config.options(),
        upstream=upstream,
        store=store,
        sealer=sealer,
        new_id=IdMint(),
    )
    install_store(app, store, expire=config.upstream_api == "chat")

    async def open_upstream(_: web.Application) -> None:
        await upstream.start()

    async def close_upstream(_: web.Application) -> None:
        await upstream.close()

    app.on_startup.append(open_upstream)
    app.on_cleanup.append(close_upstream)
    install_client_auth(app, config)
    install_health(app, config)
    install_metrics(app)
    for prefix in ("/v1", ""):
        app.router.add_post(prefix + "/responses", handlers.responses)
        app.router.add_post(prefix + "/chat/completions", handlers.chat_completions)
        app.router.add_get(prefix + "/models", handlers.models, allow_head=False)
        stored = prefix + "/responses/{response_id}"
        app.router.add_get(stored, stored_responses.get_response, allow_head=False)
        app.router.add_delete(stored, stored_responses.delete_response)
        app.router.add_get(
            stored + "/input_items", stored_responses.list_input_items, allow_head=False
        )
    return app


def serve(
    app: web.Application | Awaitable[web.Application],
    host: str,
    port: int,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM: how the demo serves; `diglot` itself runs through proxy.service."""
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        print=on_ready,
        handler_cancellation=True,  # a client that goes away cancels its upstream request
        auto_decompress=False,  # proxy.inbound decodes bodies itself, under the size limit
    )


def request_id(request: web.Request) -> str:
    """The client's x-request-id when it is a sane token, else a fresh one."""
    given = request.headers.get(REQUEST_ID)
    if given and _CLIENT_REQUEST_ID.fullmatch(given):
        return given
    return request.app[PROXY].new_id("req")


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer in OpenAI's error shape when it fails, and one log line per request."""
    record = RequestLog(request_id=request_id(request), started=time.perf_counter())
    request[RECORD] = record
    token = CURRENT_RECORD.set(record)
    status = 500
    try:
        try:
            response = await handler(request)
        except (RequestError, web.HTTPException) as exc:
            response = _refusal(request, record, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected_error", request_id=record.request_id)
            if request.writer is not None and request.writer.output_size > 0:
                raise
            body = error_body("The server had an error processing your request.", "server_error")
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
        _log_request(request, record, status, ended)
        observe_request(request, record, status, ended)


def _refusal(
    request: web.Request, record: RequestLog, exc: RequestError | web.HTTPException
) -> web.Response:
    """A request diglot (or aiohttp's router) refused, as an OpenAI error."""
    if isinstance(exc, web.HTTPException):
        record.error = exc.reason
        return _http_error(request, record, exc)
    record.error = exc.code
    response = _error(record, exc.status, exc.body())
    if isinstance(exc, Overloaded):
        response.headers["Retry-After"] = exc.retry_after
    return response


def _error(record: RequestLog, status: int, body: dict[str, object]) -> web.Response:
    return json_response(body, status, {REQUEST_ID: record.request_id})


def _http_error(request: web.Request, record: RequestLog, exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (unknown path, wrong method, ...) in OpenAI's shape."""
    if exc.status == 404:
        message, code = f"Invalid URL ({request.method} {request.path})", "unknown_url"
    elif exc.status == 405:
        message, code = f"Method {request.method} is not allowed on {request.path}", None
    else:
        message, code = exc.reason, None
    kind = "server_error" if exc.status >= 500 else "invalid_request_error"
    response = _error(record, exc.status, error_body(message, kind, None, code))
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def _log_request(request: web.Request, record: RequestLog, status: int, ended: float) -> None:
    if not log.is_enabled_for(logging.INFO):
        return  # building the line costs more than the rest of a quiet request's bookkeeping
    fields = {
        "request_id": record.request_id,
        "method": request.method,
        "path": request.path,
        "direction": record.direction,
        "model": record.model,
        "stream": record.stream,
        "status": status,
        "upstream_status": record.upstream_status,
        "duration_ms": _ms(ended - record.started),
        "ttfb_ms": None if record.first_byte is None else _ms(record.first_byte - record.started),
        "upstream_ms": None if record.upstream_ms is None else round(record.upstream_ms, 2),
        "upstream_total_ms": _upstream_total_ms(record, ended),
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "dropped": record.dropped or None,
        "upstream_error": record.fault(),
        "upstream_retries": record.upstream_retries or None,
        "error": record.error,
    }
    log.info("request", **{key: value for key, value in fields.items() if value is not None})


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _upstream_total_ms(record: RequestLog, ended: float) -> float | None:
    """From the upstream request to the end of its answer (or of diglot's wait for it)."""
    if record.upstream_started is None:
        return None
    return _ms((record.upstream_ended or ended) - record.upstream_started)
