"""Errors as OpenAI-style values, both API shapes side by side.

A refused request, an upstream's error reply, and an error inside an answer: a Chat `error`
member as a Responses `error` object and a Responses one as a Chat error body and status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from diglot.translators.responses_shapes import ResponseError


class ErrorObject(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(TypedDict):
    """`{"error": {...}}`: both APIs' error replies, and the chunk that ends a failed stream."""

    error: ErrorObject


class RequestError(Exception):
    """A client body diglot refuses; becomes an OpenAI error body with the offending `param`."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        code: str | None = "invalid_value",
        status: int = 400,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
        self.error_type = error_type

    def body(self) -> ErrorBody:
        return error_body(self.message, self.error_type, self.param, self.code)


def missing_parameter(path: str) -> RequestError:
    """OpenAI's 400 for a required field the body lacks, naming it by its path."""
    message = f"Missing required parameter: '{path}'."
    return RequestError(message, path, "missing_required_parameter")


def invalid_type(path: str, expected: str) -> RequestError:
    """OpenAI's 400 for a field of the wrong JSON type, saying what it should be."""
    return RequestError(f"Invalid type for '{path}': expected {expected}.", path, "invalid_type")


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> ErrorBody:
    """The `{"error": {...}}` envelope both API shapes share."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_MAX_MESSAGE = 2000
_OPTIONAL = ("type", "param", "code")  # each a string or null in OpenAI's error object


def is_openai_error(payload: object) -> bool:
    """`{"error": {"message": str, ...}}` with OpenAI's field types: passthrough relays it as is."""
    if not isinstance(payload, dict):
        return False
    error = payload.get("error")
    return (
        isinstance(error, dict)
        and isinstance(error.get("message"), str)
        and all(error.get(key) is None or isinstance(error[key], str) for key in _OPTIONAL)
    )


def upstream_error_body(status: int, payload: object) -> ErrorBody:
    """Any backend's error body (OpenAI, vLLM, llama.cpp, Ollama, FastAPI, text) as OpenAI's."""
    default_type = _TYPE_BY_STATUS.get(status, "server_error" if status >= 500 else "api_error")
    message: str | None = None
    error_type, param, code = default_type, None, None
    fields: object = payload
    if isinstance(payload, dict):
        inner = payload.get("error")
        if isinstance(inner, dict):
            fields = inner
        elif isinstance(inner, str) and inner:
            message = inner
        elif "detail" in payload:
            message = _detail_text(payload["detail"])
    if isinstance(fields, dict):
        if message is None and isinstance(fields.get("message"), str):
            message = fields["message"]
        if isinstance(fields.get("type"), str) and fields["type"]:
            error_type = fields["type"]
        if isinstance(fields.get("param"), str):
            param = fields["param"]
        if isinstance(fields.get("code"), str):
            code = fields["code"]
    elif isinstance(payload, str | bytes) and payload:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        message = text.strip()
    if not message:
        message = f"The upstream returned HTTP {status}."
    return error_body(message[:_MAX_MESSAGE], error_type, param, code)


def _detail_text(detail: object) -> str:
    """FastAPI-style `detail`: a string or a list of validation problems."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = [str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail]
        return "; ".join(parts)
    return str(detail)


# The codes a Responses `error` may carry; anything else is reported as a server error.
_RESPONSES_ERROR_CODES = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "invalid_prompt",
        "vector_store_timeout",
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "image_content_policy_violation",
        "invalid_image_mode",
        "image_file_too_large",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
        "image_file_not_found",
    }
)


def responses_error(message: str, code: str | None = None) -> ResponseError:
    """A Responses `error` object; codes outside its vocabulary become `server_error`."""
    return {"code": code if code in _RESPONSES_ERROR_CODES else "server_error", "message": message}


def error_to_responses(error: object) -> ResponseError:
    """The `error` member of a Chat body or stream chunk as a Responses `error` object."""
    if not isinstance(error, dict):
        return responses_error(str(error))
    message = error.get("message")
    code = error.get("code")
    kind = error.get("type")
    if not isinstance(code, str) or code not in _RESPONSES_ERROR_CODES:
        limited = "rate_limit" in f"{code} {kind}" or code == 429
        code = "rate_limit_exceeded" if limited else None
    return responses_error(message if isinstance(message, str) else str(error), code)


# Statuses of the Responses error codes: those naming the input all name an image, but one.
_STATUS_BY_CODE = {
    "rate_limit_exceeded": 429,
    "invalid_prompt": 400,
    "server_error": 500,
    "vector_store_timeout": 500,
}


def error_to_chat(error: object, fallback: str) -> tuple[ErrorBody, int]:
    """A Responses `error` (of a failed response or an `error` event) as Chat's body and status."""
    fields = error if isinstance(error, dict) else {}
    code = fields.get("code")
    code = code if isinstance(code, str) and code else "server_error"
    status = _STATUS_BY_CODE.get(code, 400 if "image" in code else 500)
    message = fields.get("message")
    error_type = fields.get("type")
    if not isinstance(error_type, str) or not error_type:
        error_type = _TYPE_BY_STATUS.get(status, "server_error")
    param = fields.get("param")
    return error_body(
        message if isinstance(message, str) and message else fallback,
        error_type,
        param if isinstance(param, str) else None,
        code,
    ), status


class UpstreamFailed(Exception):
    """The upstream reports the response failed: the Chat client gets its error, not an answer."""

    def __init__(self, body: ErrorBody, status: int) -> None:
        super().__init__(body["error"]["message"])
        self.body = body
        self.status = status


def failed_response_to_chat(response: Mapping[str, Any]) -> UpstreamFailed:
    """A response that did not complete, its error in the Chat client's shape."""
    status = response.get("status")
    fallback = f"The upstream response ended with status {status!r}."
    body, http_status = error_to_chat(response.get("error"), fallback)
    return UpstreamFailed(body, http_status)
