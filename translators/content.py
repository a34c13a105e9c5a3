"""Content parts: Responses `input_*`/`output_*` parts <-> Chat Completions message content."""

from __future__ import annotations

from typing import Any


def chat_content_text(content: object) -> str:
    """Chat message content as plain text (some backends answer with a list of text parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return ""


def _token_bytes(entry: dict[str, Any]) -> list[int]:
    """Chat may send `bytes: null`; Responses always wants the UTF-8 bytes."""
    raw = entry.get("bytes")
    return raw if isinstance(raw, list) else list(str(entry.get("token", "")).encode())


def chat_logprobs_to_responses(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat `logprobs.content` entries as Responses `output_text` logprobs."""
    return [
        {
            "token": entry.get("token", ""),
            "logprob": entry.get("logprob", 0.0),
            "bytes": _token_bytes(entry),
            "top_logprobs": [
                {
                    "token": top.get("token", ""),
                    "logprob": top.get("logprob", 0.0),
                    "bytes": _token_bytes(top),
                }
                for top in entry.get("top_logprobs") or ()
            ],
        }
        for entry in entries
    ]


def output_text_part(text: str, logprobs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}


def refusal_part(refusal: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": refusal}


def message_item(item_id: str, parts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    """The assistant `message` output item holding answer text and refusal parts."""
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": parts,
    }
