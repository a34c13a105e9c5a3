"""Minted ids: OpenAI-looking, unique, and ordered by the second they were made."""

from __future__ import annotations

import re

import pytest

from diglot.proxy import ids
from diglot.proxy.ids import IdMint


def test_ids_start_with_the_second_they_were_made(monkeypatch: pytest.MonkeyPatch) -> None:
    mint = IdMint()
    monkeypatch.setattr(ids.time, "time", lambda: 0x65000000 + 0.9)
    early = [mint("resp") for _ in range(100)]
    monkeypatch.setattr(ids.time, "time", lambda: 0x65000001)
    late = mint("resp")
    assert all(re.fullmatch(r"resp_65000000[0-9a-f]{40}", one) for one in early)
    assert late.startswith("resp_65000001")
    assert max(early) < late
    assert len(set(early)) == 100
