"""What every handler shares: configuration, translation options, upstream, store, sealer."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from proxy.config import Config
from proxy.ids import IdMint
from proxy.observability import RequestLog
from proxy.seal import Sealer
from proxy.store import Store
from proxy.upstream import Upstream
from translators.context import Options
from translators.models import ToolShelf


@dataclass(frozen=True, slots=True)
class Proxy:
    config: Config
    options: Options
    upstream: Upstream
    store: Store
    sealer: Sealer
    new_id: IdMint
    tool_shelf: ToolShelf  # the tools Responses clients sent lately, decoded and translated


PROXY = web.AppKey("proxy", Proxy)
RECORD = web.RequestKey("record", RequestLog)  # what the request frame logs for the request
