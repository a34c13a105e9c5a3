"""Several upstreams: which one a request's model goes to, and which replica of it.

Each upstream (an [[upstreams]] table, or `--upstream` alone) is a `Pool` of replicas sharing
one in-flight limit. A model goes to the upstream its alias names, else to the first whose
patterns match it. Within an upstream, a request without a session goes to the replica with
the fewest requests in flight; the turns of a session stay on one replica while it is live,
and a new session is placed by consistent hashing with bounded load, where the load counted is
the sessions already seated on each replica.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import orjson

from diglot.proxy.config import Config, UpstreamSettings, matches
from diglot.proxy.jsonenc import dumps
from diglot.proxy.limits import UpstreamSlots
from diglot.proxy.observability import get_logger
from diglot.proxy.upstream import Upstream, UpstreamRefused, read_all, upstream_failure
from diglot.translators.errors import RequestError

if TYPE_CHECKING:
    from diglot.proxy.state import Proxy

log = get_logger()
SESSION_OUTCOMES = ("kept", "moved", "new")  # a session turn's replica: its last one, or not
_ABSENT = frozenset({404, 405, 501})  # the upstream has no such endpoint
_EMPTY_BODY = b"{}"  # a request every API refuses, without generating anything
_LOAD_FACTOR = 1.2  # a replica takes a new session while it holds under 1.2x its fair share
_POINTS = 64  # places of each replica on the hash ring
_MAX_SESSIONS = 100_000  # per upstream; the least recently seen go first
_SESSION_IDLE = 3600.0  # seconds a session keeps its seat without a turn
_MAX_CHAINS = 100_000  # response ids remembered with the session they continue
_MAX_ROUTES = 4096  # model names remembered with their route
MODELS_TTL = 10.0  # seconds an upstream's model list is reused


class SessionParams(Protocol):
    """What routing reads of a request's params (Responses or Chat)."""

    @property
    def model(self) -> str: ...

    @property
    def prompt_cache_key(self) -> str | None: ...


class Route(NamedTuple):
    """Where a model goes: an upstream, and the name its backend knows the model by when an
    alias renamed it (else None: the client's name goes as it is)."""

    pool: Pool
    model: str | None


class _Seat:
    """A session's replica, and when the session was last seen."""

    __slots__ = ("replica", "seen")

    def __init__(self, replica: Upstream, seen: float) -> None:
        self.replica = replica
        self.seen = seen


def _point(text: str) -> int:
    """A stable 64-bit place on the ring (the same in every diglot process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Pool:
    """One upstream: its replicas, the APIs it speaks natively, the sessions seated on it."""

    def __init__(self, settings: UpstreamSettings) -> None:
        self.name = settings.name
        self.settings = settings
        slots = UpstreamSlots(settings.max_requests, settings.queue_timeout)
        self.replicas = tuple(Upstream(url, settings, slots) for url in settings.urls)
        for replica in self.replicas:
            replica.siblings = self.replicas
            replica.on_return = self._returned
        self.single = self.replicas[0] if len(self.replicas) == 1 else None
        self.auto = settings.api == "auto"
        self.chat = settings.api == "chat"  # speaks Chat Completions (so passes it through)
        self.responses = settings.api == "responses"  # speaks Responses
        self.known = not self.auto  # which of the two it speaks is known
        self.direct = Route(self, None)
        self._detecting: asyncio.Future[None] | None = None
        ring = sorted(
            (_point(f"{replica.base}#{n}"), i)
            for i, replica in enumerate(self.replicas)
            for n in range(_POINTS)
        )
        self._points = [point for point, _ in ring]
        self._owners = [self.replicas[i] for _, i in ring]
        self._sessions: OrderedDict[str, _Seat] = OrderedDict()
        self.seated = dict.fromkeys(self.replicas, 0)  # sessions per replica
        self.turns = {replica: dict.fromkeys(SESSION_OUTCOMES, 0) for replica in self.replicas}
        self._next = 0  # where the search for the least busy replica starts, in turn
        self.listed: list[dict[str, Any]] | None = None  # its model list, as last fetched
        self.listed_at = -math.inf

    def pick(self, session: str | None, chain: str | None = None) -> Upstream:
        """The replica for a request: its session's, else the least busy one.

        `chain` is the id of a response the request makes that a later one may continue (its
        session then, when it had none, is that response's).
        """
        if self.single is not None:
            return self.single
        if session is not None:
            return self._seated(session)
        replica = self._least_busy()
        if chain is not None:
            self._seat(chain_session(chain), replica, time.monotonic())
            self.turns[replica]["new"] += 1
        return replica

    def _least_busy(self) -> Upstream:
        """The live replica with the fewest requests in flight; ties taken in turn."""
        replicas = self.replicas
        count = len(replicas)
        start = self._next = (self._next + 1) % count
        best: Upstream | None = None
        for offset in range(count):
            replica = replicas[(start + offset) % count]
            if replica.live and (best is None or replica.in_flight < best.in_flight):
                best = replica
        return best or replicas[start]

    def _seated(self, session: str) -> Upstream:
        """The session's replica while it is live; else a new seat for it."""
        now = time.monotonic()
        seat = self._sessions.get(session)
        outcome = "new"
        if seat is not None:
            if seat.replica.live:
                seat.seen = now
                self._sessions.move_to_end(session)
                self.turns[seat.replica]["kept"] += 1
                return seat.replica
            self._unseat(session)
            outcome = "moved"
        replica = self._place(session)
        self._seat(session, replica, now)
        self.turns[replica][outcome] += 1
        return replica

    def _place(self, session: str) -> Upstream:
        """Consistent hashing with bounded load: the first replica clockwise from the session's
        point that holds fewer sessions than 1.2 times its fair share (this one included)."""
        live = [replica for replica in self.replicas if replica.live] or list(self.replicas)
        total = sum(self.seated[replica] for replica in live) + 1
        bound = math.ceil(total * _LOAD_FACTOR / len(live))
        start = bisect.bisect(self._points, _point(session))
        owners = self._owners
        for offset in range(len(owners)):
            replica = owners[(start + offset) % len(owners)]
            if replica in live and self.seated[replica] < bound:
                return replica
        return min(live, key=self.seated.__getitem__)

    def _seat(self, session: str, replica: Upstream, now: float) -> None:
        sessions = self._sessions
        if session in sessions:
            self._unseat(session)
        sessions[session] = _Seat(replica, now)
        self.seated[replica] += 1
        while sessions:
            oldest = next(iter(sessions))
            if len(sessions) <= _MAX_SESSIONS and now - sessions[oldest].seen < _SESSION_IDLE:
                break
            self._unseat(oldest)

    def _unseat(self, session: str) -> None:
        seat = self._sessions.pop(session)
        self.seated[seat.replica] -= 1

    async def learn(self) -> None:
        """The APIs of an `auto` upstream, found out first when unknown; 502 if none answers."""
        if self.known:
            return
        if self._detecting is None:
            self._detecting = asyncio.ensure_future(self.detect())
        detecting = self._detecting
        try:
            await asyncio.shield(detecting)
        finally:
            if detecting.done() and self._detecting is detecting:
                self._detecting = None
        if not self.known:
            raise upstream_failure(
                502,
                f"diglot could not find out which API upstream {self.name!r} speaks: "
                "none of its replicas answered.",
                "upstream_unreachable",
                "refused",
            )

    async def detect(self) -> None:
        """Ask the first replica that answers whether it has /responses and /chat/completions:
        a 404 or 405 says it has not, any other answer that it has."""
        for replica in sorted(self.replicas, key=lambda replica: not replica.live):
            responses = await replica.status_of("POST", "/responses", _EMPTY_BODY)
            chat = await replica.status_of("POST", "/chat/completions", _EMPTY_BODY)
            if responses is None or chat is None:
                continue
            self.responses, self.chat = responses not in _ABSENT, chat not in _ABSENT
            self.known = self.responses or self.chat
            log.info(
                "upstream_api_detected" if self.known else "upstream_api_unknown",
                upstream=self.name,
                replica=replica.replica,
                responses=self.responses,
                chat=self.chat,
                statuses={"/responses": responses, "/chat/completions": chat},
            )
            return
        log.warning("upstream_api_unknown", upstream=self.name, reason="no replica answered")

    def refused_with(self, status: int) -> None:
        """An `auto` upstream that answers 404 or 405 may have changed: ask it again."""
        if self.auto and status in (404, 405):
            self.known = False

    def _returned(self, _: Upstream) -> None:
        if self.auto:
            self.known = False


def chain_session(response_id: str) -> str:
    """The session of a chain of responses, named by the first."""
    return "r:" + response_id


def session_of_headers(headers: Mapping[str, str]) -> str | None:
    """The client's session header (Codex sends `session_id`, others `session-id`)."""
    given = headers.get("session-id") or headers.get("session_id")
    return "s:" + given if given else None


class Router:
    """The upstreams, in routing order; the sessions that chains of responses belong to."""

    def __init__(self, config: Config) -> None:
        self.pools = tuple(Pool(settings) for settings in config.upstream_settings())
        self.default = self.pools[0].replicas[0]  # what code that knows one upstream uses
        first = self.pools[0]
        catch_all = len(self.pools) == 1 and first.settings.models == ("*",)
        self._everything = first.direct if catch_all and not first.settings.aliases else None
        # The one upstream, one replica, every model by its own name, one API: no routing.
        single = self._everything is not None and first.single is not None
        self.only = first if single and not first.auto else None
        self._aliases = {
            alias: Route(pool, model)
            for pool in self.pools
            for alias, model in pool.settings.aliases.items()
        }
        self._routes: dict[str, Route] = {}
        # response id -> session, for the responses of a session that is not their own chain's
        self._chains: OrderedDict[str, str] = OrderedDict()
        self._proxies: dict[Upstream, Proxy] = {}  # the app's proxy, bound to each replica

    @property
    def keeps_state(self) -> bool:
        """Whether diglot keeps responses for some upstream (all but a Responses one do)."""
        return any(not pool.responses or pool.auto for pool in self.pools)

    @property
    def replicas(self) -> tuple[Upstream, ...]:
        return tuple(replica for pool in self.pools for replica in pool.replicas)

    async def start(self) -> None:
        """Open every replica's pool, then find out what each `auto` upstream speaks."""
        for replica in self.replicas:
            await replica.start()
        await asyncio.gather(*(pool.detect() for pool in self.pools if pool.auto))

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.close()

    def route(self, model: str) -> Route:
        """The upstream a model goes to; 404 `model_not_found` when none takes it."""
        if self._everything is not None:
            return self._everything
        found = self._routes.get(model)
        if found is None:
            found = self._aliases.get(model) or self._matched(model)
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()
            self._routes[model] = found
        return found

    def _matched(self, model: str) -> Route:
        for pool in self.pools:
            if matches(model, pool.settings.models):
                return pool.direct
        raise RequestError(
            f"The model `{model}` does not exist or you do not have access to it.",
            None,
            "model_not_found",
            404,
        )

    def session(
        self,
        headers: Mapping[str, str],
        prompt_cache_key: str | None = None,
        conversation: object = None,
        previous_response_id: str | None = None,
    ) -> str | None:
        """A request's session: its prompt_cache_key, else its conversation, else the first
        response of the chain it continues, else the client's session header."""
        if prompt_cache_key:
            return "k:" + prompt_cache_key
        if isinstance(conversation, dict):
            conversation = conversation.get("id")
        if isinstance(conversation, str) and conversation:
            return "c:" + conversation
        if previous_response_id:
            return self._chains.get(previous_response_id) or chain_session(previous_response_id)
        return session_of_headers(headers)

    def continues(self, response_id: str, session: str | None) -> None:
        """A response a later request may continue belongs to this session; one of no session
        starts its own, which `session` names without a note."""
        if session is None:
            return
        chains = self._chains
        chains[response_id] = session
        if len(chains) > _MAX_CHAINS:
            chains.popitem(last=False)

    def pick(
        self,
        route: Route,
        headers: Mapping[str, str],
        params: SessionParams,
        response_id: str | None,
    ) -> Upstream:
        """The replica for a request of these (Responses or Chat) params; a Responses request
        that makes `response_id` starts or goes on with its chain."""
        pool = route.pool
        if pool.single is not None and response_id is None:
            return pool.single
        session = self.session(
            headers,
            params.prompt_cache_key,
            getattr(params, "conversation", None),
            getattr(params, "previous_response_id", None),
        )
        if response_id is not None:
            self.continues(response_id, session)
        return pool.pick(session, response_id)

    def bound(
        self,
        proxy: Proxy,
        params: SessionParams,
        headers: Mapping[str, str],
        response_id: str | None,
    ) -> Proxy:
        """`proxy` with the replica this request goes to as its upstream (itself, unrouted)."""
        if self.only is not None:
            return proxy
        return self.on(proxy, self.pick(self.route(params.model), headers, params, response_id))

    def on(self, proxy: Proxy, upstream: Upstream) -> Proxy:
        """The app's `proxy` with `upstream` as the replica its requests go to (made once)."""
        if upstream is proxy.upstream:
            return proxy
        bound = self._proxies.get(upstream)
        if bound is None:
            bound = self._proxies[upstream] = replace(proxy, upstream=upstream)
        return bound

    def for_backend(self, body: dict[str, Any]) -> dict[str, Any]:
        """A request body as its upstream gets it: the model by the backend's name."""
        if not self._aliases:
            return body
        backend = self._aliases.get(body.get("model", ""))
        return body if backend is None else {**body, "model": backend.model}

    def aliased(self, model: str) -> bool:
        """Whether the backend knows this model by another name (then the answers are renamed)."""
        return model in self._aliases

    async def model_list(
        self, headers: Mapping[str, str], request_id: str
    ) -> list[dict[str, Any]] | None:
        """Every upstream's models (each routable name once, aliases included), from a list at
        most MODELS_TTL old, or the last one an upstream that is down gave; None when no
        upstream has ever answered."""
        now = time.monotonic()
        stale = [pool for pool in self.pools if now - pool.listed_at >= MODELS_TTL]
        await asyncio.gather(*(self._fetch(pool, headers, request_id, now) for pool in stale))
        if all(pool.listed is None for pool in self.pools):
            return None
        merged: dict[str, dict[str, Any]] = {}
        for pool in self.pools:
            listed = {entry["id"]: entry for entry in pool.listed or ()}
            for name, entry in listed.items():
                if name not in merged and self._routes_to(name, pool):
                    merged[name] = entry
            for alias, model in pool.settings.aliases.items():
                if alias not in merged:
                    merged[alias] = {**listed.get(model, _listing(model, pool)), "id": alias}
        return list(merged.values())

    def _routes_to(self, model: str, pool: Pool) -> bool:
        try:
            return self.route(model) == pool.direct
        except RequestError:
            return False

    async def _fetch(
        self, pool: Pool, headers: Mapping[str, str], request_id: str, now: float
    ) -> None:
        """An upstream's GET /models, kept when it is a list; the last one kept otherwise."""
        replica = pool.pick(None)
        forwarded = replica.headers(headers, request_id, None)
        try:
            async with replica.open(
                "GET", replica.url("/models"), forwarded, None, passthrough=True
            ) as answer:
                raw = await read_all(answer)
        except (RequestError, UpstreamRefused) as exc:
            log.warning("upstream_models_unavailable", upstream=pool.name, error=_why(exc))
            return
        listed = _model_entries(raw)
        if listed is None:
            log.warning("upstream_models_unavailable", upstream=pool.name, error="not a list")
            return
        pool.listed, pool.listed_at = listed, now


def _why(exc: RequestError | UpstreamRefused) -> str:
    return exc.message if isinstance(exc, RequestError) else f"HTTP {exc.reply.status}"


def _model_entries(raw: bytes) -> list[dict[str, Any]] | None:
    """The entries of an OpenAI model list (`{"data": [{"id": ...}, ...]}`) that have an id."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    return [entry for entry in data if isinstance(entry, dict) and isinstance(entry.get("id"), str)]


def _listing(model: str, pool: Pool) -> dict[str, Any]:
    """A model list entry for a name the upstream did not list itself."""
    return {"id": model, "object": "model", "created": 0, "owned_by": pool.name}


def renamed_body(raw: bytes, model: str) -> bytes:
    """A passed-through request body with the backend's name for its model."""
    body = orjson.loads(raw)
    body["model"] = model
    return dumps(body)


def name_for_client(pieces: list[Any], model: str) -> None:
    """Answers, chunks or events (their `response`) renamed to the model the client asked for."""
    for piece in pieces:
        if "model" in piece:
            piece["model"] = model
        response = piece.get("response")
        if type(response) is dict and "model" in response:
            response["model"] = model


class ModelRenamer:
    """A passed-through body's `"model": "<backend's name>"` put back to the client's name.

    A stream is renamed line by line (an event's JSON is one line), holding back a line until
    it has ended.
    """

    __slots__ = ("_held", "_pattern", "_replacement")

    def __init__(self, backend: str, client: str) -> None:
        name = re.escape(orjson.dumps(backend))
        self._pattern = re.compile(rb'("model"\s*:\s*)' + name)
        self._replacement = orjson.dumps(client)
        self._held = b""

    def whole(self, body: bytes) -> bytes:
        replacement = self._replacement
        return self._pattern.sub(lambda found: found[1] + replacement, body)

    def feed(self, chunk: bytes) -> bytes:
        data = self._held + chunk
        cut = data.rfind(b"\n") + 1
        self._held = data[cut:]
        return self.whole(data[:cut])

    def end(self) -> bytes:
        rest, self._held = self._held, b""
        return self.whole(rest)
