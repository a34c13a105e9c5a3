"""Content parts: Responses `input_*`/`output_*` parts <-> Chat Completions message content."""

from __future__ import annotations

from typing import Any, NoReturn, TypeGuard

import msgspec

from diglot.translators.chat_models import AudioPart, ImagePart, RefusalPart, TextPart, UserPart
from diglot.translators.chat_shapes import Annotation
from diglot.translators.context import Dropped
from diglot.translators.errors import RequestError
from diglot.translators.responses_models import (
    ContentPart,
    InputAudio,
    InputFile,
    InputImage,
    InputText,
    OutputText,
    Refusal,
)
from diglot.translators.responses_shapes import (
    ItemStatus,
    Logprob,
    MessagePart,
    ResponseInputText,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
)


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


def token_logprobs_to_responses(entries: list[dict[str, Any]]) -> list[Logprob]:
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


def token_logprobs_to_chat(entries: list[object]) -> list[Logprob]:
    """Responses `output_text` logprobs as Chat `logprobs.content`: one shape, normalised alike;
    an upstream's unreadable entries are left out."""
    return token_logprobs_to_responses([entry for entry in entries if _is_token_logprob(entry)])


def _is_token_logprob(entry: object) -> TypeGuard[dict[str, Any]]:
    """A readable entry: token, number, byte list if any, and top alternatives alike."""
    if not isinstance(entry, dict) or not _is_logprob(entry):
        return False
    top = entry.get("top_logprobs")
    return top is None or (isinstance(top, list) and all(_is_logprob(t) for t in top))


def _is_logprob(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    raw = entry.get("bytes")
    return (
        isinstance(entry.get("token"), str)
        and isinstance(entry.get("logprob"), int | float)
        and (raw is None or (isinstance(raw, list) and all(isinstance(b, int) for b in raw)))
    )


def annotations_to_chat(annotations: object, offset: int) -> list[Annotation]:
    """An `output_text` part's URL citations as Chat's, indexes shifted by the text before it.

    Chat knows no file citations or paths; those stay with the Responses item.
    """
    if not isinstance(annotations, list):
        return []
    return [
        {
            "type": "url_citation",
            "url_citation": {
                "start_index": note.get("start_index", 0) + offset,
                "end_index": note.get("end_index", 0) + offset,
                "url": note.get("url", ""),
                "title": note.get("title", ""),
            },
        }
        for note in annotations
        if isinstance(note, dict) and note.get("type") == "url_citation"
    ]


def output_text_part(text: str, logprobs: list[Logprob]) -> ResponseOutputText:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}


def input_text_part(text: str) -> ResponseInputText:
    return {"type": "input_text", "text": text}


def message_text_parts(role: object, text: str) -> list[ResponseOutputText | ResponseInputText]:
    """A message's string content as parts: the assistant's `output_text`, others' `input_text`."""
    return [output_text_part(text, []) if role == "assistant" else input_text_part(text)]


def refusal_part(refusal: str) -> ResponseOutputRefusal:
    return {"type": "refusal", "refusal": refusal}


def message_item(
    item_id: str, parts: list[MessagePart], status: ItemStatus
) -> ResponseOutputMessage:
    """The assistant `message` output item holding answer text and refusal parts."""
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": parts,
    }


def part_to_chat(
    part: ContentPart, within: str, position: int, dropped: list[Dropped]
) -> dict[str, Any] | None:
    """A Responses content part as a Chat one; None when a Chat upstream cannot take it.

    `within[position]` names the part, built only when something is dropped.
    """
    if isinstance(part, InputText | OutputText):
        return {"type": "text", "text": part.text}
    if isinstance(part, InputImage):
        return _chat_image(part, f"{within}[{position}]", dropped)
    if isinstance(part, InputFile):
        return _chat_file(part, f"{within}[{position}]", dropped)
    if isinstance(part, InputAudio):
        audio = part.input_audio
        return {"type": "input_audio", "input_audio": {"data": audio.data, "format": audio.format}}
    return {"type": "refusal", "refusal": part.refusal}


def _chat_image(part: InputImage, path: str, dropped: list[Dropped]) -> dict[str, Any] | None:
    if part.image_url is None:
        dropped.append(Dropped(path, "a Chat upstream takes images by URL or data URL only"))
        return None
    image: dict[str, Any] = {"url": part.image_url}
    if part.detail is not None:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def _chat_file(part: InputFile, path: str, dropped: list[Dropped]) -> dict[str, Any] | None:
    file: dict[str, Any] = {}
    if part.file_data is not None:
        file["file_data"] = part.file_data
    if part.file_id is not None:
        file["file_id"] = part.file_id
    if part.filename is not None:
        file["filename"] = part.filename
    if part.file_url is not None:
        dropped.append(Dropped(f"{path}.file_url", "a Chat upstream cannot fetch files by URL"))
    if "file_data" not in file and "file_id" not in file:
        return None
    return {"type": "file", "file": file}


def chat_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Chat message content: one text part as a plain string (what every backend reads)."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts


def text_content_to_chat(content: list[ContentPart], index: int) -> str | list[dict[str, Any]]:
    """System and developer messages of `input[index]`: Chat takes text parts only."""
    parts: list[dict[str, Any]] = []
    for position, part in enumerate(content):
        if not isinstance(part, InputText | OutputText):
            path = f"input[{index}].content[{position}]"
            _refuse_part(part.__struct_config__.tag, path, "system and developer")
        parts.append({"type": "text", "text": part.text})
    return chat_content(parts) if parts else ""


def assistant_content_to_chat(content: str | list[ContentPart], index: int) -> dict[str, Any]:
    """An assistant turn of `input[index]`: its text parts joined, its refusals as `refusal`."""
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    refusals: list[str] = []
    for position, part in enumerate(content):
        if isinstance(part, OutputText | InputText):
            texts.append(part.text)
        elif isinstance(part, Refusal):
            refusals.append(part.refusal)
        else:
            path = f"input[{index}].content[{position}]"
            _refuse_part(part.__struct_config__.tag, path, "assistant")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if refusals:
        message["refusal"] = "".join(refusals)
    return message


def _refuse_part(kind: object, path: str, roles: str) -> NoReturn:
    raise RequestError(
        f"Invalid value for '{path}.type': Chat Completions takes no {kind!s} parts in "
        f"{roles} messages.",
        f"{path}.type",
    )


def part_to_responses(part: UserPart) -> ResponseInputText | dict[str, Any]:
    """A Chat user content part as a Responses input part (the reverse of `part_to_chat`)."""
    if isinstance(part, TextPart):
        return input_text_part(part.text)
    if isinstance(part, ImagePart):
        image = part.image_url
        return {"type": "input_image", "image_url": image.url, "detail": image.detail or "auto"}
    if isinstance(part, AudioPart):
        audio = part.input_audio
        return {"type": "input_audio", "input_audio": {"data": audio.data, "format": audio.format}}
    return {"type": "input_file", **msgspec.to_builtins(part.file)}


def text_content_to_responses(content: str | list[TextPart]) -> str | list[ResponseInputText]:
    """System, developer and tool message content: a string stays one, text parts `input_text`."""
    if isinstance(content, str):
        return content
    return [input_text_part(part.text) for part in content]


def assistant_content_to_responses(
    content: str | list[TextPart | RefusalPart] | None, refusal: str | None
) -> list[MessagePart]:
    """An assistant turn's text and refusal as `output_text` and `refusal` parts."""
    parts: list[MessagePart]
    if isinstance(content, str):
        parts = [output_text_part(content, [])] if content else []
    else:
        parts = [
            output_text_part(part.text, [])
            if isinstance(part, TextPart)
            else refusal_part(part.refusal)
            for part in content or ()
        ]
    if refusal:
        parts.append(refusal_part(refusal))
    return parts
