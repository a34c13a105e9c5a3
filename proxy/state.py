"""What every handler shares: the configuration, the translation options and the upstream."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from proxy.config import Config
from proxy.observability import RequestLog
from proxy.upstream import Upstream
from translators.context import Options


@dataclass(frozen=True, slots=True)
class Proxy:
    config: Config
    options: Options
    upstream: Upstream


PROXY = web.AppKey("proxy", Proxy)
RECORD = web.RequestKey("record", RequestLog)  # what the middleware logs for the request
