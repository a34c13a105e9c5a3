"""Sealed reasoning: blobs open only under the key that sealed them; the key is made once."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from diglot.proxy.seal import KEY_FILE, Sealer, SealError
from diglot.translators.errors import RequestError
from fixtures.fake_chat_upstream import FakeUpstream, Reply, completion, tool_call

if TYPE_CHECKING:
    from tests.conftest import MakeProxy


def test_a_blob_opens_under_the_same_secret_only(tmp_path: Path) -> None:
    one, same, other = (Sealer(s, tmp_path) for s in ("alpha", "alpha", "beta"))
    blob = one.seal("Thinking about Paris.", "t1")
    assert "Paris" not in blob
    assert same.open(blob, "t1") == "Thinking about Paris."
    assert one.seal("Thinking about Paris.", "t1") != blob  # a fresh nonce every time
    with pytest.raises(SealError):
        other.open(blob, "t1")
    with pytest.raises(SealError):
        same.open(blob, "t2")
    assert not (tmp_path / KEY_FILE).exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda blob: blob[:-1],
        lambda blob: blob[:10],
        lambda blob: blob[:30] + ("x" if blob[30] != "x" else "y") + blob[31:],
        lambda blob: "",
        lambda blob: "***",
        lambda blob: "é" + blob,
    ],
)
def test_damaged_blobs_do_not_open(tmp_path: Path, damage: object) -> None:
    sealer = Sealer("alpha", tmp_path)
    blob = sealer.seal("secret thoughts", "t1")
    with pytest.raises(SealError):
        sealer.open(damage(blob), "t1")  # type: ignore[operator]


def test_without_a_secret_the_key_is_made_once_in_the_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    blob = Sealer(None, state).seal("kept", "t1")
    key = state / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 32
    assert [path.name for path in state.iterdir()] == [KEY_FILE]
    assert Sealer(None, state).open(blob, "t1") == "kept"


def test_an_unusable_state_dir_is_a_503(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RequestError) as caught:
        Sealer(None, blocker / "state").seal("x", "t1")
    assert caught.value.status == 503
    assert caught.value.code == "seal_key_unavailable"


STATELESS = {"store": False, "include": ["reasoning.encrypted_content"]}
PARIS = tool_call("call_1", "get_weather", '{"city":"Paris"}')
THOUGHT = completion(
    None, tool_calls=[PARIS], finish_reason="tool_calls", reasoning_content="Thought 0."
)


async def sealed_turn(make_proxy: MakeProxy, fake: FakeUpstream) -> tuple[Any, list[Any]]:
    """A first stateless turn: the proxy, and its reasoning item (sealed) and tool call."""
    fake.script(Reply(THOUGHT))
    proxy = await make_proxy("chat")
    first = await proxy.post("/v1/responses", json={"model": "m", "input": "Go", **STATELESS})
    assert first.status == 200, await first.text()
    output: list[Any] = (await first.json())["output"]
    return proxy, output


def follow_up(reasoning: dict[str, Any], call: dict[str, Any]) -> dict[str, Any]:
    result = {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
    go = {"role": "user", "content": "Go"}
    return {"model": "m", "input": [go, reasoning, call, result], **STATELESS}


def tampered(blob: str) -> str:
    return blob[:20] + ("A" if blob[20] != "A" else "B") + blob[21:]


@pytest.mark.parametrize(
    "readable",
    [
        {"summary": [{"type": "summary_text", "text": "Thought 0."}]},
        {"summary": [], "content": [{"type": "reasoning_text", "text": "Thought 0."}]},
    ],
    ids=["summary", "content"],
)
async def test_an_altered_blob_beside_readable_text_is_refused(
    make_proxy: MakeProxy, fake: FakeUpstream, readable: dict[str, Any]
) -> None:
    proxy, (reasoning, call) = await sealed_turn(make_proxy, fake)
    blob = tampered(reasoning["encrypted_content"])
    item = {"type": "reasoning", "encrypted_content": blob, **readable}
    refused = await proxy.post("/v1/responses", json=follow_up(item, call))
    assert refused.status == 400
    assert await refused.json() == {
        "error": {
            "message": "Invalid value for 'input[1].encrypted_content': the reasoning cannot be "
            "opened; it was altered, cut short or sealed by another server.",
            "type": "invalid_request_error",
            "param": "input[1].encrypted_content",
            "code": "invalid_encrypted_content",
        }
    }
    assert len(fake.received) == 1


@pytest.mark.parametrize("field", ["summary", "content"])
async def test_a_sound_blob_beside_readable_text_goes_back_once_as_sealed(
    make_proxy: MakeProxy, fake: FakeUpstream, field: str
) -> None:
    proxy, (reasoning, call) = await sealed_turn(make_proxy, fake)
    part = {"type": "summary_text" if field == "summary" else "reasoning_text", "text": "Other."}
    sealed = {key: reasoning[key] for key in ("type", "id", "encrypted_content")}
    item = {**sealed, "summary": [], field: [part]}
    fake.script(Reply(completion("Sunny.")))
    answer = await proxy.post("/v1/responses", json=follow_up(item, call))
    assert answer.status == 200, await answer.text()
    messages = fake.last.json()["messages"]
    assert [m.get("reasoning_content") for m in messages] == [None, "Thought 0.", None]
