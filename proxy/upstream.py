"""The upstream side: one pooled client session, forwarded headers, and failures as errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from proxy.config import Config
from translators.errors import RequestError

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by diglot itself on the way up: the body is re-sent decoded and uncompressed.
_NOT_FORWARDED_UP = HOP_BY_HOP | {
    "host",
    "content-length",
    "content-encoding",
    "accept-encoding",
    "content-type",
    "x-request-id",
    "expect",
}
_NOT_RELAYED_DOWN = HOP_BY_HOP | {"x-request-id"}
REQUEST_ID = "x-request-id"


def upstream_failure(status: int, message: str, code: str) -> RequestError:
    """502/504: the upstream could not be reached or did not answer in time."""
    return RequestError(message, code=code, status=status, error_type="server_error")


def _connection_tokens(headers: Mapping[str, str]) -> frozenset[str]:
    """Headers named in `Connection:` are hop-by-hop too."""
    value = headers.get("Connection")
    if not value:
        return frozenset()
    return frozenset(token.strip().lower() for token in value.split(","))


def relay_headers(upstream: Mapping[str, str]) -> CIMultiDict[str]:
    """The upstream's response headers as the client gets them in passthrough."""
    drop = _NOT_RELAYED_DOWN | _connection_tokens(upstream)
    if "Content-Encoding" in upstream:  # the client session decoded the body
        drop |= {"content-encoding", "content-length"}
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in upstream.items():
        if key.lower() not in drop:
            out.add(key, value)
    return out


def rate_limit_headers(upstream: Mapping[str, str]) -> dict[str, str]:
    """Retry-After and x-ratelimit-* kept on translated answers and errors."""
    return {
        key: value
        for key, value in upstream.items()
        if key.lower() == "retry-after" or key.lower().startswith("x-ratelimit-")
    }


class Upstream:
    """The backend diglot serves from; owns the shared, pooled ClientSession."""

    def __init__(self, config: Config) -> None:
        self._base = config.upstream
        key = config.upstream_api_key
        self._authorization = f"Bearer {key}" if key is not None else None
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None,
            sock_connect=config.connect_timeout,
            sock_read=config.read_timeout,
        )
        self._urls: dict[str, URL] = {}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the pool; called from the app's startup (a session needs a running loop)."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=self._timeout,
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str, query: str = "") -> URL:
        """`{upstream}{path}`, parsed once per path."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self._base + path)
        return url.with_query(query) if query else url

    def headers(
        self, incoming: Mapping[str, str], request_id: str, content_type: str | None
    ) -> dict[str, str]:
        """What goes up: the client's end-to-end headers, our request id, the configured key."""
        drop = _NOT_FORWARDED_UP | _connection_tokens(incoming)
        if self._authorization is not None:
            drop |= {"authorization"}
        out: dict[str, str] = {}
        for key, value in incoming.items():
            if key.lower() not in drop:
                out[key] = value
        if content_type is not None:
            out["Content-Type"] = content_type
        out["Accept-Encoding"] = "identity"
        out[REQUEST_ID] = request_id
        if self._authorization is not None:
            out["Authorization"] = self._authorization
        return out

    @asynccontextmanager
    async def open(
        self, method: str, url: URL, headers: dict[str, str], body: bytes | None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request; unreachable -> 502, no answer in time -> 504."""
        assert self._session is not None, "Upstream.start() was not awaited"
        try:
            response = await self._session.request(
                method, url, headers=headers, data=body, allow_redirects=False
            )
        except TimeoutError:
            raise upstream_failure(
                504, "The upstream did not answer in time.", "upstream_timeout"
            ) from None
        except aiohttp.ClientError as exc:
            raise upstream_failure(
                502, f"The upstream could not be reached: {exc}", "upstream_unreachable"
            ) from None
        try:
            yield response
        finally:
            response.release()


async def read_all(response: aiohttp.ClientResponse) -> bytes:
    """A whole (non-streamed) upstream body; a broken or stalled one -> 502/504."""
    try:
        return await response.read()
    except TimeoutError:
        raise upstream_failure(
            504, "The upstream did not finish its answer in time.", "upstream_timeout"
        ) from None
    except aiohttp.ClientError as exc:
        raise upstream_failure(
            502, f"The upstream connection broke: {exc}", "upstream_error"
        ) from None
