"""In front of a Responses upstream the upstream owns conversation state: diglot relays it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from fixtures.fake_chat_upstream import FakeUpstream, Reply

if TYPE_CHECKING:
    from tests.conftest import MakeProxy


async def test_previous_response_id_goes_up_untouched(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    fake.script(Reply({"id": "resp_2", "object": "response"}))
    proxy = await make_proxy("responses")
    body = b'{"model":"m","input":"more","previous_response_id":"resp_1","store":true}'
    answer = await proxy.post(
        "/v1/responses", data=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status == 200
    assert fake.last.body == body


async def test_get_delete_and_input_items_are_relayed(
    make_proxy: MakeProxy, fake: FakeUpstream
) -> None:
    stored = {"id": "resp_1", "object": "response", "output": []}
    items = {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    gone = {"id": "resp_1", "object": "response.deleted", "deleted": True}
    missing = {
        "error": {"message": "No response with id 'resp_x'.", "type": "invalid_request_error"}
    }
    fake.script(Reply(stored), Reply(items), Reply(gone), Reply(missing, status=404))
    proxy = await make_proxy("responses")
    auth = {"Authorization": "Bearer sk-up"}
    got = await proxy.get("/v1/responses/resp_1", headers=auth)
    assert (got.status, await got.json()) == (200, stored)
    listed = await proxy.get("/v1/responses/resp_1/input_items?limit=5&order=asc", headers=auth)
    assert (listed.status, await listed.json()) == (200, items)
    deleted = await proxy.delete("/v1/responses/resp_1", headers=auth)
    assert (deleted.status, await deleted.json()) == (200, gone)
    unknown = await proxy.get("/responses/resp_x", headers=auth)
    assert unknown.status == 404
    assert (await unknown.json())["error"]["message"] == "No response with id 'resp_x'."
    seen = [(r.method, r.path, r.query) for r in fake.received]
    assert seen == [
        ("GET", "/v1/responses/resp_1", ""),
        ("GET", "/v1/responses/resp_1/input_items", "limit=5&order=asc"),
        ("DELETE", "/v1/responses/resp_1", ""),
        ("GET", "/v1/responses/resp_x", ""),
    ]
    assert all(r.headers["Authorization"] == "Bearer sk-up" for r in fake.received)
    assert fake.received[0].body == b""


@pytest.mark.parametrize("path", ["/v1/responses/resp_x", "/v1/responses/resp_x/input_items"])
async def test_an_openai_shaped_error_of_a_stored_route_arrives_byte_exact(
    make_proxy: MakeProxy, fake: FakeUpstream, path: str
) -> None:
    raw = b'{ "error" : {"type":"invalid_request_error","message":"No response \\u00e9 \xc3\xa9.",'
    raw += b' "param": null, "code": null, "extra": [1]} }'
    fake.script(Reply(raw, status=404))
    proxy = await make_proxy("responses")
    unknown = await proxy.get(path)
    assert (unknown.status, await unknown.read()) == (404, raw)
