"""The Open Responses schema the tests validate against: the recorded release, in the repo."""

from __future__ import annotations

import hashlib

from tests.validate import SCHEMA_PATH, SCHEMA_VERSION, open_responses_schema

SCHEMA_SHA256 = "693f26090d206230ed22b336681f547a2882cf5b131e86743966cf71bbdeedab"


def test_the_schema_is_inside_the_repository() -> None:
    tests_dir = SCHEMA_PATH.parents[1]
    assert SCHEMA_PATH.is_relative_to(tests_dir)
    assert tests_dir.name == "tests"


def test_the_schema_is_open_responses_2026_04_24_unmodified() -> None:
    document = open_responses_schema()
    assert document["info"] == {"title": "Open Responses", "version": SCHEMA_VERSION}
    assert SCHEMA_VERSION == "2026-04-24"
    assert hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_the_schema_covers_what_the_tests_validate() -> None:
    schemas = open_responses_schema()["components"]["schemas"]
    for name in ("CreateResponseBody", "ResponseResource", "ResponseCompletedStreamingEvent"):
        assert name in schemas
