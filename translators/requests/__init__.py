"""Request bodies from one API shape to the other, one module per direction."""

from translators.requests.to_chat import ChatCall, responses_request_to_chat

__all__ = ["ChatCall", "responses_request_to_chat"]
