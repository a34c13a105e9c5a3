"""Minted ids: OpenAI-looking, unique, and ordered by the second they were made."""

from __future__ import annotations

import re

import pytest

from diglot.translators import ids
from diglot.translators.ids import IdMint


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


def test_ids_sort_in_the_order_they_were_made_within_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mint = IdMint()
    clock = iter(0x65000000 + tick * 7e-6 for tick in range(1200))
    monkeypatch.setattr(ids.time, "time", lambda: next(clock))
    made = [mint(prefix) for prefix in ("resp", "msg", "msg", "resp") * 300]
    assert all(re.fullmatch(r"(resp|msg)_65000000[0-9a-f]{40}", one) for one in made)
    for prefix in ("resp", "msg"):
        theirs = [one for one in made if one.startswith(prefix + "_")]
        assert theirs == sorted(theirs)


def test_each_item_type_has_its_prefix_and_others_share_one() -> None:
    assert {kind: ids.item_prefix(kind) for kind in ids.ITEM_PREFIXES} == {
        "message": "msg",
        "function_call": "fc",
        "function_call_output": "fco",
        "custom_tool_call": "ctc",
        "custom_tool_call_output": "ctco",
        "reasoning": "rs",
        "compaction": "cmp",
    }
    assert ids.item_prefix("web_search_call") == "item"
