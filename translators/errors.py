"""Errors as OpenAI-style values: what the client sees when a body cannot be translated."""

from __future__ import annotations

from typing import Any


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

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, self.param, self.code)


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The `{"error": {...}}` envelope both API shapes share."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
