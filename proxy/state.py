"""What every handler shares: configuration, translation options, upstream, store, sealer."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from diglot.proxy.config import Config
from diglot.proxy.ids import IdMint
from diglot.proxy.observability import RequestLog
from diglot.proxy.seal import Sealer
from diglot.proxy.store import Store
from diglot.proxy.upstream import Upstream
from diglot.translators.context import Options
from diglot.translators.models import ToolShelf


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
