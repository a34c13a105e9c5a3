"""The translators' output shapes are TypedDicts: mypy rejects an event or item with a misspelt
key, while at run time they stay the plain dicts they always were."""

from __future__ import annotations

from pathlib import Path

from mypy import api

from diglot.translators.content import message_item, output_text_part

EMIT = """\
from diglot.translators.stream.emitter import Emitter

Emitter().emit(
    {{
        "type": "response.output_text.delta",
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "Hi",
        "{logprobs}": [],
    }}
)
"""


def check(tmp_path: Path, source: str) -> tuple[str, int]:
    path = tmp_path / "emit.py"
    path.write_text(source)
    cache = str(tmp_path / "cache")
    out, _, status = api.run(
        [str(path), "--strict", "--follow-imports=silent", "--cache-dir", cache]
    )
    return out, status


def test_a_misspelt_event_key_fails_mypy(tmp_path: Path) -> None:
    assert check(tmp_path, EMIT.format(logprobs="logprobs")) == (
        "Success: no issues found in 1 source file\n",
        0,
    )
    out, status = check(tmp_path, EMIT.format(logprobs="logprob"))
    assert status == 1
    assert 'emit.py:4: error: Argument 1 to "emit" of "Emitter" has incompatible type' in out


def test_shapes_are_plain_dicts_at_run_time() -> None:
    item = message_item("msg_1", [output_text_part("Hi", [])], "completed")
    assert type(item) is dict and type(item["content"][0]) is dict
    assert item == {
        "id": "msg_1",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Hi", "annotations": [], "logprobs": []}],
    }
