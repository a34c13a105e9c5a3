"""Request bodies from one API shape to the other, one module per direction."""

from diglot.translators.requests.to_chat import ChatCall, responses_request_to_chat
from diglot.translators.requests.to_responses import ResponsesCall, chat_request_to_responses

__all__ = ["ChatCall", "ResponsesCall", "chat_request_to_responses", "responses_request_to_chat"]
