"""Ids for responses, items and calls: the one mint, and the prefix each kind of id starts with.

Sans-I/O like the rest of `translators`: the app makes one `IdMint` (`Proxy.new_id`) and hands
it to every translation as its `IdFactory`; tests hand theirs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

IdFactory = Callable[[str], str]  # a prefix in, a fresh id starting with `{prefix}_` out

RESPONSE_PREFIX = "resp"
CHAT_COMPLETION_PREFIX = "chatcmpl"
CONVERSATION_PREFIX = "conv"
CALL_ID_PREFIX = "call"  # a tool call's `call_id`, where the upstream gave none
REQUEST_PREFIX = "req"  # a request's id in the logs and the `x-request-id` header
# An item's id by its `type`, as OpenAI's look; any other type's id starts with `item_`.
ITEM_PREFIXES: Mapping[str, str] = MappingProxyType(
    {
        "message": "msg",
        "function_call": "fc",
        "function_call_output": "fco",
        "custom_tool_call": "ctc",
        "custom_tool_call_output": "ctco",
        "reasoning": "rs",
        "compaction": "cmp",
    }
)


def item_prefix(item_type: str) -> str:
    """The prefix of an id for an item of this `type`."""
    return ITEM_PREFIXES.get(item_type, "item")


_RANDOM_HEX = 34  # the random part of an id: 136 bits
_DRAWN_AT_ONCE = 256  # ids' worth of randomness read from the OS in one call


class IdMint:
    """One per process; ids name things and guard nothing.

    An id starts with the second it was made (as OpenAI's do), then its microsecond, six hex
    digits, so that ids sort in the order they were made: stored together, they sit side by
    side at the end of the store's indexes, and a write touches one index page where ids in
    random order would touch one per id. The rest is 136 random bits from the OS, read for
    many ids at once and sliced out; the second is formatted once per second.
    """

    __slots__ = ("_hex", "_second", "_stamp", "_taken")

    def __init__(self) -> None:
        self._hex = ""
        self._taken = 0
        self._second = -1
        self._stamp = ""

    def __call__(self, prefix: str) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, f"{second:08x}"
        start = self._taken
        if start == len(self._hex):
            self._hex, start = os.urandom(_RANDOM_HEX // 2 * _DRAWN_AT_ONCE).hex(), 0
        self._taken = end = start + _RANDOM_HEX
        micro = int((now - second) * 1_000_000)
        return f"{prefix}_{self._stamp}{micro:06x}{self._hex[start:end]}"
