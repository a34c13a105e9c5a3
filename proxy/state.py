"""What every handler shares: configuration, translation options, upstreams, store, sealer."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from diglot.proxy.config import Config
from diglot.proxy.observability import RequestLog
from diglot.proxy.routing import Router
from diglot.proxy.seal import Sealer
from diglot.proxy.store import Store
from diglot.proxy.upstream import Upstream
from diglot.translators.context import Options
from diglot.translators.ids import IdMint
from diglot.translators.responses_models import ToolShelf


@dataclass(frozen=True, slots=True)
class Proxy:
    config: Config
    options: Options
    upstream: Upstream  # the replica a request goes to: the first upstream's, unless routed
    store: Store
    sealer: Sealer
    new_id: IdMint
    tool_shelf: ToolShelf  # the tools Responses clients sent lately, decoded and translated
    router: Router


PROXY = web.AppKey("proxy", Proxy)
RECORD = web.RequestKey("record", RequestLog)  # what the request frame logs for the request
