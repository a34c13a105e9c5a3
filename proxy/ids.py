"""Ids for requests, responses and items: unique across replicas, without a syscall each."""

from __future__ import annotations

import os
import random
import time


class IdMint:
    """One generator per process, seeded by the OS; ids name things and guard nothing.

    An id starts with the second it was made (as OpenAI's do), so ids stored together sit
    together in the store's indexes: a large store's writes stay as cheap as a small one's.
    """

    __slots__ = ("_random",)

    def __init__(self) -> None:
        self._random = random.Random(os.urandom(32))

    def __call__(self, prefix: str) -> str:
        return f"{prefix}_{int(time.time()):08x}{self._random.getrandbits(160):040x}"
