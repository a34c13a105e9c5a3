"""Each request rule's two directions agree: a Responses request's settings, sent to Chat and
read back as a Chat request, come back as they were (so do a Chat request's the other way)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from diglot.translators.chat_models import decode_chat_request
from diglot.translators.context import Options
from diglot.translators.ids import IdMint
from diglot.translators.requests import request_to_chat, request_to_responses
from diglot.translators.responses_models import decode_responses_request

SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}}
# Fields both APIs name alike (the penalties and `stop` are Chat-only on the way back, where
# diglot forwards them when configured to).
SHARED = {
    "temperature": st.sampled_from([0.0, 0.7, 2.0]),
    "top_p": st.sampled_from([0.1, 1.0]),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "user": st.text(max_size=3),
    "safety_identifier": st.text(max_size=3),
    "prompt_cache_key": st.text(max_size=3),
    "prompt_cache_retention": st.sampled_from(["in_memory", "24h"]),
    "metadata": st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    "service_tier": st.sampled_from(["auto", "flex"]),
    "stop": st.sampled_from(["x", ["a", "b"]]),
    "presence_penalty": st.sampled_from([-2.0, 0.5]),
    "frequency_penalty": st.sampled_from([0.0, 2.0]),
}
RESPONSES_SETTINGS = {
    **SHARED,
    "max_output_tokens": st.integers(1, 2**31),
    "top_logprobs": st.integers(0, 20),
    "reasoning": st.builds(dict, effort=st.sampled_from(["minimal", "low", "high"])),
    "text": st.sampled_from(
        [
            {"format": {"type": "json_object"}},
            {"format": {"type": "json_schema", "name": "n", "schema": SCHEMA}},
            {
                "format": {
                    "type": "json_schema",
                    "name": "n",
                    "schema": SCHEMA,
                    "description": "d",
                    "strict": True,
                },
                "verbosity": "low",
            },
            {"verbosity": "high"},
        ]
    ),
    "include": st.just(["message.output_text.logprobs"]),
    "stream": st.just(True),
}


@given(
    st.fixed_dictionaries({}, optional=RESPONSES_SETTINGS),
    st.sampled_from(["max_tokens", "max_completion_tokens"]),
)
def test_responses_settings_survive_a_round_trip_through_chat(
    settings: dict[str, Any], max_tokens_field: Any
) -> None:
    if "top_logprobs" in settings:
        settings["include"] = ["message.output_text.logprobs"]
    request = {"model": "m", "input": "hi", **settings}
    options = Options(forward_chat_only_params=True, max_tokens_field=max_tokens_field)
    chat = request_to_chat(
        decode_responses_request(orjson.dumps(request)), options, now=0, new_id=IdMint()
    )
    back = request_to_responses(
        decode_chat_request(orjson.dumps(chat.body)), options, now=0, new_id=IdMint()
    )
    assert chat.dropped == [] and back.dropped == []
    assert back.body.pop("input") == [{"type": "message", "role": "user", "content": "hi"}]
    assert back.body.pop("store") is False  # Chat's default, said out loud
    assert back.body == {"model": "m", **settings}


CHAT_SETTINGS = {
    **SHARED,
    "max_completion_tokens": st.integers(1, 2**31),
    "reasoning_effort": st.sampled_from(["minimal", "high"]),
    "response_format": st.sampled_from(
        [
            {"type": "json_object"},
            {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}},
            {
                "type": "json_schema",
                "json_schema": {"name": "n", "schema": SCHEMA, "description": "d", "strict": False},
            },
        ]
    ),
    "verbosity": st.sampled_from(["low", "medium"]),
    "logprobs": st.just(True),
}


@given(
    st.fixed_dictionaries({}, optional=CHAT_SETTINGS),
    st.sampled_from(["max_tokens", "max_completion_tokens"]),
)
def test_chat_settings_survive_a_round_trip_through_responses(
    settings: dict[str, Any], max_tokens_field: Any
) -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **settings}
    options = Options(forward_chat_only_params=True, max_tokens_field=max_tokens_field)
    responses = request_to_responses(
        decode_chat_request(orjson.dumps(request)), options, now=0, new_id=IdMint()
    )
    responses.body.pop("store")
    back = request_to_chat(
        decode_responses_request(orjson.dumps(responses.body)), options, now=0, new_id=IdMint()
    )
    assert responses.dropped == [] and back.dropped == []
    expected = {**request}
    if "max_completion_tokens" in expected:
        expected[max_tokens_field] = expected.pop("max_completion_tokens")
    assert back.body == expected
