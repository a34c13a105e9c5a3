"""Background responses (`background: true`, chat upstream): answered at once, run detached from
the client, polled, streamed again from any event, cancelled, from any replica sharing the store.

A run is the turn any create request runs (`responses_over_chat`), always streamed from the
upstream, in a task the app owns: a client that goes away does not stop it. Every event is kept
in the store in order (up to `EVENT_BYTES` per response, the oldest dropped past it), then handed
to the followers this diglot serves; a follower served elsewhere polls the store. A lease per
run, renewed every `HEARTBEAT` with the response as it stands, tells other replicas who runs it
and carries their cancels to it; a lease left unrenewed for `LEASE` seconds (its diglot was
killed) is taken by the first diglot to sweep, which ends the response `failed`. On SIGTERM the
runs get the drain timeout to finish, then end `failed` too: none stays `in_progress`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal

import msgspec
from aiohttp import web
from multidict import CIMultiDict

from diglot.proxy.conversation import Turn, not_found, store_unavailable, tenant_of
from diglot.proxy.conversations import relay
from diglot.proxy.jsonenc import dumps
from diglot.proxy.metrics import Metrics, start_answer
from diglot.proxy.observability import CLIENT_GONE, CURRENT_RECORD, RequestLog, get_logger
from diglot.proxy.replies import json_response
from diglot.proxy.sse import encode_events
from diglot.proxy.state import PROXY, RECORD
from diglot.proxy.store import KeptEvents, LapsedRun, Store, StoreUnavailable
from diglot.proxy.upstream import REQUEST_ID, UpstreamRefused
from diglot.translators.context import ResponseContext
from diglot.translators.errors import RequestError
from diglot.translators.requests.include import stream_to_chat
from diglot.translators.responses_models import Params
from diglot.translators.responses_shapes import Response, ResponseStreamEvent
from diglot.translators.stream.chat_to_responses import ChatToResponsesStream, lapsed_to_failed
from diglot.translators.stream.lifecycle import StreamPhase, ends_response

HEARTBEAT = 1.0  # seconds between two renewals of this diglot's leases, and sweeps for lapsed ones
LEASE = 10.0  # a run whose lease went this long unrenewed is taken as gone with its diglot
EVENT_BYTES = 8 * 1024 * 1024  # events kept per response; past it the oldest go
POLL = 0.1  # how often a follower of a response run elsewhere looks for its new events
CANCEL_WAIT = 10.0  # how long a cancel waits for the diglot running the response to end it
ACTIVE = frozenset({"queued", "in_progress"})
Halt = Literal["cancel", "shutdown", "lost"]
Batch = list[tuple[int, bytes]]  # events as (sequence number, frame)
log = get_logger()
_OPEN = StreamPhase.OPEN
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_BEYOND = 2**40  # a sequence number after every event: asks only where the events stand
_CHECK_EVERY = 10  # idle polls between two looks at whether a response followed elsewhere ended
# A run stores its finished response before it keeps its last events: a follower that sees the
# response ended looks for those events this many seconds more.
_LAST_EVENTS_WAIT = 3.0
_LAPSED = (
    "The diglot running this background response stopped before it finished (its lease of "
    f"{LEASE:g} s ran out)."
)


def take_background(params: Params) -> bool:
    """Whether a create request runs in the background (taken here: the translation has
    nothing left to refuse). Its response is only ever seen from the store: `store` must hold."""
    if not params.background:
        return False
    if params.store is False:
        raise RequestError(
            "Background responses are stored to be polled: 'store' cannot be false.",
            "store",
            "invalid_value",
        )
    params.background = None
    return True


class Run:
    """One background response this diglot runs: its task, its translator once it streams, and
    its events on their way to the store and to the followers served here."""

    def __init__(
        self,
        runs: Runs,
        turn: Turn,
        ctx: ResponseContext,
        record: RequestLog,
        headers: Mapping[str, str],
    ) -> None:
        self.runs = runs
        self.turn = turn
        self.ctx = ctx
        self.record = record
        self.headers = headers
        self.response_id = ctx.response_id
        self.tenant = turn.tenant
        self.translator: ChatToResponsesStream | None = None  # the pipeline's, once it streams
        self.produced = 0  # events handed to `emit`
        self.halted: Halt | None = None
        self.task: asyncio.Task[None] | None = None
        self.writer: asyncio.Task[None] | None = None
        self._shown = 0  # `produced` when the progress was last written
        self._pending: Batch = []
        self._followers: set[asyncio.Queue[Batch | None]] = set()
        self._wake = asyncio.Event()
        self._closing = False
        self._flushed = False  # the writer handed over its last batch

    async def emit(self, events: list[ResponseStreamEvent]) -> None:
        """The pipeline's sink: queued for the writer without waiting, so that a halt lands
        only where the run waits on the upstream or the store, never halfway through a batch."""
        if events and not self.produced:
            self.runs.metrics.background_queue.dec()
        for event in events:
            self._pending.append((event["sequence_number"], encode_events((event,))))
        self.produced += len(events)
        self._wake.set()

    async def write(self) -> None:
        """Each batch kept in the store, then handed to the followers here: a follower that
        joined before reading the store misses nothing."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self.runs.keep_events(self, batch)
                for inbox in self._followers:
                    inbox.put_nowait(batch)
            if self._closing and not self._pending:
                break
        self._flushed = True
        for inbox in self._followers:
            inbox.put_nowait(None)

    async def close(self) -> None:
        """Once the last batch was emitted: wait for the writer to keep it."""
        self._closing = True
        self._wake.set()
        if self.writer is not None:
            await self.writer

    def follow(self) -> asyncio.Queue[Batch | None] | None:
        """An inbox of the batches kept from now on (None after the last); None when the writer
        is done and everything is in the store already."""
        if self._flushed:
            return None
        inbox: asyncio.Queue[Batch | None] = asyncio.Queue()
        self._followers.add(inbox)
        return inbox

    def unfollow(self, inbox: asyncio.Queue[Batch | None]) -> None:
        self._followers.discard(inbox)

    def halt(self, why: Halt) -> None:
        """Stop the run where it waits, unless it produced its last event already."""
        translator = self.translator
        if self.halted or self.task is None or self.task.done():
            return
        if translator is not None and translator.phase is not _OPEN:
            return
        self.halted = why
        self.task.cancel()

    def progress(self) -> bytes | None:
        """The response as it stands, when it moved on since last asked (for the lease)."""
        translator = self.translator
        if translator is None or translator.phase is not _OPEN or self.produced == self._shown:
            return None
        self._shown = self.produced
        return dumps(translator.snapshot())

    def shown(self, stored: dict[str, Any]) -> Response | dict[str, Any]:
        """The response as a poll sees it: as it stands now, or `stored` until it streams."""
        translator = self.translator
        if translator is None or not self.produced:
            return stored
        return translator.response or translator.snapshot()

    def ending(self, failure: tuple[str, str | None] | None) -> list[ResponseStreamEvent]:
        """The last events of a run that stopped short (halted, or failed), if it did."""
        translator = self.translator or ChatToResponsesStream(self.ctx)
        if translator.phase is not _OPEN:
            return []
        if self.halted == "cancel":
            events = translator.cancel()
        elif self.halted == "shutdown":
            events = translator.fail(
                "diglot was shut down before this background response finished (its drain "
                f"timeout of {self.runs.drain_timeout:g} s ran out).",
                "server_error",
            )
        elif failure is not None:
            events = translator.fail(*failure)
        else:
            return []
        self.translator = translator
        return events


Generate = Callable[[Run], Awaitable[None]]


class Runs:
    """The background responses this diglot runs, its leases on them, and its sweeps for the
    runs of diglots that are gone."""

    def __init__(self, store: Store, metrics: Metrics, drain_timeout: float) -> None:
        self.store = store
        self.metrics = metrics
        self.drain_timeout = drain_timeout
        self.event_bytes = EVENT_BYTES
        self.owner = f"diglot_{secrets.token_hex(12)}"
        self.local: dict[str, Run] = {}
        self.closing = False
        self._beat: asyncio.Task[None] | None = None
        self._failing = False  # the last heartbeat found the store down

    def start(self, run: Run, generate: Generate) -> None:
        """Run it in a task of the app's, not the request's."""
        self.local[run.response_id] = run
        self.metrics.background_queue.inc()
        run.writer = asyncio.create_task(run.write())
        run.task = asyncio.create_task(self._run(run, generate))

    async def _run(self, run: Run, generate: Generate) -> None:
        CURRENT_RECORD.set(run.record)  # the task's own context: its upstream exchange's record
        failure: tuple[str, str | None] | None = None
        try:
            await generate(run)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if run.halted is None or task is None:
                raise
            task.uncancel()
        except UpstreamRefused as refused:
            failure = _refusal(refused.reply)
        except RequestError as exc:
            failure = (exc.message, exc.code)
        except Exception:
            log.exception("background_response_error", response_id=run.response_id)
            failure = ("The server had an error while running this response.", "server_error")
        await self._end(run, failure)

    async def _end(self, run: Run, failure: tuple[str, str | None] | None) -> None:
        """Keep how the run ended, let its followers see it end, give up its lease."""
        if run.halted != "lost":
            events = run.ending(failure)
            translator = run.translator
            if events and translator is not None and translator.response is not None:
                await run.turn.keep(translator.response)
                await run.emit(events)
        await run.close()
        if not run.produced:
            self.metrics.background_queue.dec()
        del self.local[run.response_id]
        if run.halted == "lost":
            return
        with contextlib.suppress(StoreUnavailable):
            await self.store.end_run(run.response_id)
        response = run.translator.response if run.translator is not None else None
        status = response["status"] if response is not None else "failed"
        self.metrics.background_responses.labels(status).inc()
        record = run.record
        log.info(
            "background_response_ended",
            response_id=run.response_id,
            request_id=record.request_id,
            status=status,
            duration_ms=round((time.perf_counter() - record.started) * 1000, 2),
            upstream_status=record.upstream_status,
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            error=record.error,
        )

    async def keep_events(self, run: Run, batch: Batch) -> None:
        """A batch into the store; one it could not keep leaves a gap replays are told about."""
        try:
            await self.store.keep_events(
                run.response_id, run.ctx.created_at, batch, self.event_bytes
            )
        except StoreUnavailable as exc:
            log.warning("background_events_not_kept", response_id=run.response_id, error=str(exc))

    async def cancel(self, tenant: str, response_id: str) -> None:
        """Halt the run here, or ask the diglot running it, and wait (a while) for it to end."""
        run = self.local.get(response_id)
        if run is not None and run.tenant == tenant:
            run.halt("cancel")
            assert run.task is not None
            await asyncio.shield(run.task)  # the canceller leaving does not stop the run's end
            return
        if not await self.store.cancel_run(tenant, response_id):
            return
        with contextlib.suppress(TimeoutError):  # then it is answered as it stands
            async with asyncio.timeout(CANCEL_WAIT):
                while (await _stored_response(self.store, tenant, response_id))["status"] in ACTIVE:
                    await asyncio.sleep(POLL)

    async def shown(
        self, tenant: str, response_id: str, stored: dict[str, Any]
    ) -> Response | dict[str, Any]:
        """A stored response as a poll sees it: a running one as it stands, here or elsewhere."""
        if stored["status"] not in ACTIVE:
            return stored
        run = self.local.get(response_id)
        if run is not None and run.tenant == tenant:
            return run.shown(stored)
        try:
            progress = await self.store.run_progress(tenant, response_id)
        except StoreUnavailable:
            return stored
        if progress is None:
            return stored
        shown: dict[str, Any] = msgspec.json.decode(progress)
        return shown

    async def begin(self, _: web.Application) -> None:
        """On startup: renew leases and sweep for lapsed runs, from now on."""
        self._beat = asyncio.create_task(self._heartbeat())

    async def drain(self, _: web.Application) -> None:
        """On SIGTERM: runs get the drain timeout to finish, then end failed; the beat stops."""
        self.closing = True
        running = [run.task for run in self.local.values() if run.task is not None]
        if running:
            await asyncio.wait(running, timeout=self.drain_timeout)
        for run in list(self.local.values()):
            run.halt("shutdown")
        left = [run.task for run in self.local.values() if run.task is not None]
        if left:
            await asyncio.wait(left)
        await self.stop(_)

    async def stop(self, _: web.Application) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
            self._beat = None

    async def _heartbeat(self) -> None:
        while True:
            try:
                await self._renew()
                await self.sweep()
            except StoreUnavailable as exc:
                if not self._failing:
                    log.warning("background_heartbeat_failed", error=str(exc))
                self._failing = True
            else:
                if self._failing:
                    log.info("background_heartbeat_recovered")
                self._failing = False
            await asyncio.sleep(HEARTBEAT)

    async def _renew(self) -> None:
        """This diglot's leases extended, with the progress of each run; cancels asked elsewhere
        carried out, runs taken from it stopped."""
        progress = {run_id: run.progress() for run_id, run in self.local.items()}
        if not progress:
            return
        renewal = await self.store.renew_runs(self.owner, progress, LEASE)
        for why, run_ids in (("cancel", renewal.cancel), ("lost", renewal.lost)):
            for run_id in run_ids:
                run = self.local.get(run_id)
                if run is not None:
                    run.halt("cancel" if why == "cancel" else "lost")

    async def sweep(self) -> None:
        """The runs of diglots that are gone end failed; polls see their progress meanwhile, and
        one whose end could not be stored lapses again, to be ended by the next sweep."""
        for lapsed in await self.store.lapsed_runs(self.owner, LEASE):
            if await self._fail(lapsed):
                await self.store.end_run(lapsed.response_id)

    async def _fail(self, lapsed: LapsedRun) -> bool:
        """A run whose diglot is gone ends failed, as far as it got; its followers see it end.

        False when its failed response could not be stored."""
        record = await self.store.get(lapsed.tenant, lapsed.response_id)
        if record is None:
            return True
        body = msgspec.json.decode(record.body)
        stored = body["response"]
        if stored["status"] not in ACTIVE:
            return True
        progress = msgspec.json.decode(lapsed.progress) if lapsed.progress else stored
        where = await self.store.kept_events(lapsed.response_id, _BEYOND)
        event = lapsed_to_failed(progress, _LAPSED, where.next)
        turn = Turn(
            self.store, lapsed.tenant, previous_id=record.previous_id, input_items=body["input"]
        )
        if not await turn.keep(event["response"]):
            return False
        frame = encode_events((event,))
        await self.store.keep_events(
            lapsed.response_id, record.created_at, [(where.next, frame)], self.event_bytes
        )
        self.metrics.background_responses.labels("failed").inc()
        log.warning("background_response_lapsed", response_id=lapsed.response_id)
        return True


RUNS = web.AppKey("background_runs", Runs)


def install_background(
    app: web.Application, store: Store, metrics: Metrics, drain: float, keeps_state: bool
) -> None:
    """The app's runs; where diglot keeps responses (a chat upstream) they renew, sweep and
    drain."""
    runs = app[RUNS] = Runs(store, metrics, drain)
    if keeps_state:
        app.on_startup.append(runs.begin)
        app.on_shutdown.append(runs.drain)
        app.on_cleanup.append(runs.stop)


async def start_background(
    request: web.Request,
    record: RequestLog,
    params: Params,
    turn: Turn,
    ctx: ResponseContext,
    body: dict[str, Any],
    generate: Generate,
) -> web.StreamResponse:
    """Answer at once with the queued response (or its stream), the run going on detached."""
    runs = request.app[RUNS]
    if runs.closing:
        raise RequestError(
            "diglot is shutting down and takes no new background responses; try again shortly.",
            code="shutting_down",
            status=503,
            error_type="server_error",
        )
    stream_to_chat(msgspec.structs.replace(params, stream=True), body)  # to show its progress
    queued = {**ChatToResponsesStream(ctx).snapshot(), "status": "queued"}
    try:
        await runs.store.claim_run(ctx.response_id, turn.tenant, runs.owner, LEASE)
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "a background response cannot be kept") from None
    if not await turn.keep(queued):
        with contextlib.suppress(StoreUnavailable):
            await runs.store.end_run(ctx.response_id)
        unstored = StoreUnavailable("the queued response could not be stored")
        raise store_unavailable(unstored, "a background response cannot be kept")
    run_record = RequestLog(
        request_id=record.request_id,
        direction="responses->chat",
        model=record.model,
        stream=True,
        started=time.perf_counter(),
    )
    run = Run(runs, turn, ctx, run_record, CIMultiDict(request.headers))
    inbox = run.follow() if params.stream else None
    runs.start(run, generate)
    if inbox is None:
        return json_response(dumps(queued), 200, {REQUEST_ID: record.request_id})
    follower = Follower(runs, turn.tenant, ctx.response_id, -1, inbox=inbox)
    return await _sse(request, record, follower, KeptEvents([], 0, 0), "queued")


class Follower:
    """One client following a background response's events: those kept after the one it names,
    then each as it is kept, up to the terminal one, without a gap or a repeat."""

    def __init__(
        self,
        runs: Runs,
        tenant: str,
        response_id: str,
        after: int,
        inbox: asyncio.Queue[Batch | None] | None = None,
    ) -> None:
        self.store = runs.store
        self.tenant = tenant
        self.response_id = response_id
        self.last = after
        self._ended: float | None = None  # when the follower first saw the response ended
        self._run = runs.local.get(response_id)
        if inbox is None and self._run is not None and self._run.tenant == tenant:
            inbox = self._run.follow()  # before reading the store: nothing falls in between
        self._inbox = inbox

    async def catch_up(self) -> KeptEvents:
        """The kept events after the one named."""
        return await self.store.kept_events(self.response_id, self.last)

    def close(self) -> None:
        if self._inbox is not None and self._run is not None:
            self._run.unfollow(self._inbox)

    async def frames(self, kept: KeptEvents, status: str) -> AsyncIterator[bytes]:
        """The kept events, then the new ones as they come, until the terminal one. A response
        that had ended when the follower came (`status`) may still have its last events to
        keep, unless the follower saw its terminal event already."""
        if status not in ACTIVE:
            if not kept.frames and await self._saw_the_end():
                return
            self._ended = time.monotonic()
        batch: Batch | None = self._numbered(kept)
        while batch is not None:
            out, ended = self._take(batch)
            if out:
                yield out
            if ended:
                return
            batch = await self._next()

    async def _saw_the_end(self) -> bool:
        """Whether the event the follower named (`starting_after`) is its response's last."""
        if self.last < 0:
            return False
        named = await self.store.kept_events(self.response_id, self.last - 1)
        return bool(named.frames) and named.first <= self.last and _ends(named.frames[0])

    def _numbered(self, kept: KeptEvents) -> Batch:
        start = max(self.last + 1, kept.first)
        return [(start + offset, frame) for offset, frame in enumerate(kept.frames)]

    def _take(self, batch: Batch) -> tuple[bytes, bool]:
        """The frames that follow on from the last one sent, and whether the stream ended."""
        out: list[bytes] = []
        for seq, frame in batch:
            if seq <= self.last:
                continue
            if seq > self.last + 1:
                out.append(_gap_frame(self.response_id, self.last))
                return b"".join(out), True
            self.last = seq
            out.append(frame)
            if _ends(frame):
                return b"".join(out), True
        return b"".join(out), False

    async def _next(self) -> Batch | None:
        """The next batch: from the run here while it runs, else from the store; None once the
        response is gone or ended without more to send."""
        if self._inbox is not None:
            batch = await self._inbox.get()
            if batch is not None:
                return batch
            self._inbox = None  # the run here ended: whatever else comes is in the store
        idle = 0
        while True:
            kept = await self.store.kept_events(self.response_id, self.last)
            if kept.frames:
                return self._numbered(kept)
            idle += 1
            if idle % _CHECK_EVERY == 1 and not await self._running(kept):
                return None
            await asyncio.sleep(POLL)

    async def _running(self, kept: KeptEvents) -> bool:
        """Whether the response may still send events: it is stored and either still running,
        holding events the follower has not seen, or ended so lately that its last events may
        still be on their way."""
        record = await self.store.get(self.tenant, self.response_id)
        if record is None:
            return False
        status = msgspec.json.decode(record.body)["response"]["status"]
        if status in ACTIVE or kept.next > self.last + 1:
            return True
        now = time.monotonic()
        if self._ended is None:
            self._ended = now
        return now - self._ended < _LAST_EVENTS_WAIT


async def stream_response(request: web.Request) -> web.StreamResponse:
    """GET /v1/responses/{response_id}?stream=true[&starting_after=N]: a background response's
    events after N (from the first without it), then live until its terminal event."""
    runs, record = request.app[RUNS], request[RECORD]
    after = _starting_after(request.query.get("starting_after"))
    tenant = tenant_of(request.headers)
    response_id = request.match_info["response_id"]
    try:
        stored = await _stored_response(runs.store, tenant, response_id)
        if not stored.get("background"):
            raise RequestError(
                f"Response '{response_id}' was not created in the background, so it has no "
                "events to stream; retrieve it without 'stream'.",
                "stream",
                "invalid_value",
            )
        follower = Follower(runs, tenant, response_id, after)
        try:
            kept = await follower.catch_up()
            if after + 1 < kept.first:
                raise RequestError(
                    f"The events of response '{response_id}' after sequence number {after} are "
                    f"no longer kept (past {runs.event_bytes} bytes the oldest go); resume from "
                    f"'starting_after' {kept.first - 1} or later.",
                    "starting_after",
                    "events_not_kept",
                )
            return await _sse(request, record, follower, kept, stored["status"])
        finally:
            follower.close()
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "stored responses cannot be read") from None


async def cancel_response(request: web.Request) -> web.StreamResponse:
    """POST /v1/responses/{response_id}/cancel: a queued or running background response ends
    `cancelled` with its output so far; cancelling it again answers it as it is. In front of a
    Responses upstream, the upstream's."""
    proxy = request.app[PROXY]
    if not proxy.router.keeps_state:
        return await relay(request, proxy)
    runs, record = request.app[RUNS], request[RECORD]
    tenant = tenant_of(request.headers)
    response_id = request.match_info["response_id"]
    try:
        stored: Response | dict[str, Any] = await _stored_response(runs.store, tenant, response_id)
        if not stored.get("background"):
            raise RequestError(
                f"Response '{response_id}' was not created in the background; only background "
                "responses can be cancelled.",
                None,
                "not_background",
            )
        status = stored["status"]
        if status not in ACTIVE and status != "cancelled":
            raise RequestError(f"Cannot cancel a {status} response.", None, "invalid_status")
        if status in ACTIVE:
            await runs.cancel(tenant, response_id)
            stored = await runs.shown(
                tenant, response_id, await _stored_response(runs.store, tenant, response_id)
            )
    except StoreUnavailable as exc:
        raise store_unavailable(exc, "the response cannot be cancelled") from None
    return json_response(dumps(stored), 200, {REQUEST_ID: record.request_id})


async def _stored_response(store: Store, tenant: str, response_id: str) -> dict[str, Any]:
    record = await store.get(tenant, response_id)
    if record is None:
        raise not_found(response_id)
    response: dict[str, Any] = msgspec.json.decode(record.body)["response"]
    return response


async def _sse(
    request: web.Request,
    record: RequestLog,
    follower: Follower,
    kept: KeptEvents,
    status: str,
) -> web.StreamResponse:
    """The follower's frames as an event stream, to a client that may go away meanwhile."""
    response = web.StreamResponse(
        status=200, headers={**_SSE_HEADERS, REQUEST_ID: record.request_id}
    )
    try:
        await start_answer(request, response)
        async for frames in follower.frames(kept, status):
            await response.write(frames)
        await response.write_eof()
    except ConnectionResetError:
        record.error = CLIENT_GONE
    finally:
        follower.close()
    return response


def _starting_after(given: str | None) -> int:
    if given is None:
        return -1
    if not given.isdigit():
        raise RequestError(
            "Invalid 'starting_after': expected the sequence number of an event (an integer "
            "from 0).",
            "starting_after",
            "invalid_value",
        )
    return int(given)


def _ends(frame: bytes) -> bool:
    """Whether a frame (`event: <type>` first) is its response's last."""
    return ends_response(frame[7 : frame.find(b"\n")].decode())


def _gap_frame(response_id: str, last: int) -> bytes:
    """The error ending a follow whose next events went past the cap before it read them."""
    event = {
        "type": "error",
        "code": "events_not_kept",
        "message": f"The events of response '{response_id}' after sequence number {last} are no "
        "longer kept; retrieve the response instead.",
        "param": None,
        "sequence_number": last + 1,
    }
    return encode_events((event,))


def _refusal(reply: web.Response) -> tuple[str, str | None]:
    """The message and code of an upstream refusal, as the failed response reports them."""
    raw = reply.body if isinstance(reply.body, bytes) else b""
    with contextlib.suppress(msgspec.DecodeError):
        error = msgspec.json.decode(raw).get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            code = error.get("code")
            return error["message"], code if isinstance(code, str) else None
    return f"The upstream answered HTTP {reply.status}.", "server_error"
