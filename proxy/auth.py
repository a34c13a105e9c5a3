"""Optional inbound authentication: only clients bearing one of the configured keys get in."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from aiohttp import web

from diglot.proxy.config import Config
from diglot.proxy.observability import get_logger
from diglot.translators.errors import RequestError

log = get_logger()
EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})
_BEARER = "bearer "


def _digest(key: str) -> bytes:
    """Keys are compared as digests, so every comparison is of equal length."""
    return hashlib.sha256(key.encode()).digest()


def read_keys_file(path: str) -> list[str]:
    """One key per line; blank lines and `#` comments are ignored."""
    with open(path, encoding="utf-8") as handle:
        lines = (line.strip() for line in handle)
        return [line for line in lines if line and not line.startswith("#")]


class ClientKeys:
    """The accepted keys; the file's share is re-read on SIGHUP."""

    __slots__ = ("_digests", "_fixed", "_path")

    def __init__(self, fixed: Iterable[str], path: str | None) -> None:
        self._fixed = [_digest(key) for key in fixed]
        self._path = path
        self._digests = self._fixed
        if path is not None:
            self._digests = self._fixed + [_digest(key) for key in read_keys_file(path)]

    @property
    def enabled(self) -> bool:
        return bool(self._fixed) or self._path is not None

    def reload(self) -> None:
        """Re-read the keys file; on failure keep the keys already loaded."""
        if self._path is None:
            return
        try:
            keys = read_keys_file(self._path)
        except (OSError, ValueError) as exc:
            log.error("client_keys_reload_failed", path=self._path, error=str(exc))
            return
        self._digests = self._fixed + [_digest(key) for key in keys]
        log.info("client_keys_reloaded", path=self._path, count=len(keys))

    def accepts(self, presented: str) -> bool:
        """Compare against every key, whatever matched, so timing tells nothing."""
        digest = _digest(presented)
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(known, digest)
        return found


CLIENT_KEYS = web.AppKey("client_keys", ClientKeys)


def _presented_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[: len(_BEARER)].lower() != _BEARER:
        return None
    return header[len(_BEARER) :].strip() or None


def _missing() -> RequestError:
    return RequestError(
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        code=None,
        status=401,
    )


def _incorrect() -> RequestError:
    return RequestError("Incorrect API key provided.", code="invalid_api_key", status=401)


def check_client_key(request: web.Request, keys: ClientKeys) -> None:
    """401 in OpenAI's shape unless the request bears an accepted key."""
    presented = _presented_key(request)
    if presented is None:
        raise _missing()
    if not keys.accepts(presented):
        raise _incorrect()


def install_client_auth(app: web.Application, config: Config) -> ClientKeys | None:
    """The keys requests are checked against, or None when authentication is off.

    A keys file, even an empty one, turns it on.
    """
    keys = ClientKeys(config.client_api_keys, config.client_api_keys_file)
    app[CLIENT_KEYS] = keys
    return keys if keys.enabled else None
