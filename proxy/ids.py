"""Ids for requests, responses and items: unique across replicas, without a syscall each."""

from __future__ import annotations

import os
import random


class IdMint:
    """One generator per process, seeded by the OS; ids name things and guard nothing."""

    __slots__ = ("_random",)

    def __init__(self) -> None:
        self._random = random.Random(os.urandom(32))

    def __call__(self, prefix: str) -> str:
        return f"{prefix}_{self._random.getrandbits(192):048x}"
