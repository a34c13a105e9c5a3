"""Ids for responses, items and calls: the one mint, and the prefix each kind of id starts with.

Sans-I/O like the rest of `translators`: the app makes one `IdMint` (`Proxy.new_id`) and hands
it to every translation as its `IdFactory`; tests hand theirs.
"""

from __future__ import annotations

import os
import random
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


class IdMint:
    """One generator per process, seeded by the OS; ids name things and guard nothing.

    An id starts with the second it was made (as OpenAI's do), so ids stored together sit
    together in the store's indexes: a large store's writes stay as cheap as a small one's.
    The second is formatted once per second, and the random part is 20 bytes in hex, which
    costs less than formatting a 160-bit number: every request mints several ids.
    """

    __slots__ = ("_random", "_second", "_stamp")

    def __init__(self) -> None:
        self._random = random.Random(os.urandom(32))
        self._second = -1
        self._stamp = ""

    def __call__(self, prefix: str) -> str:
        second = int(time.time())
        if second != self._second:
            self._second, self._stamp = second, f"{second:08x}"
        return f"{prefix}_{self._stamp}{self._random.randbytes(20).hex()}"
