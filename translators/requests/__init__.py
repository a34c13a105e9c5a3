"""Request bodies from one API shape to the other.

`to_chat` and `to_responses` only assemble. Each concept's rules live in one module, both
directions side by side (`…_to_chat` beside `…_to_responses`):

- `requests.sampling`: sampling, limits and identity fields (`temperature`, `seed`, `user`,
  `metadata`, …; `max_output_tokens` <-> `max_tokens` / `max_completion_tokens`).
- `requests.text_format`: `text.format`, `text.verbosity` <-> `response_format`, `verbosity`.
- `requests.include`: what the answer carries (`include` <-> `logprobs`, `top_logprobs`;
  usage in a stream, `stream_options`; sealed reasoning).
- `requests.tool_fields`: `tools`, `tool_choice`, `parallel_tool_calls` <-> the same,
  `functions`, `function_call`, `web_search_options`; each tool and choice: `translators.tools`.
- `requests.messages`: `instructions` and `input` items <-> `messages`; each content part:
  `translators.content`.
- `translators.reasoning`: `reasoning.effort` <-> `reasoning_effort`, reasoning items <->
  `reasoning_content`.
- `requests.state`: `previous_response_id`, `conversation`, `background`, `item_reference`;
  `store`.
- `requests.unmapped`: fields with no twin (`prompt`, `max_tool_calls`, …; `stop`,
  `logit_bias`, `audio`, …).
"""

from diglot.translators.requests.to_chat import ChatCall, request_to_chat
from diglot.translators.requests.to_responses import ResponsesCall, request_to_responses

__all__ = ["ChatCall", "ResponsesCall", "request_to_chat", "request_to_responses"]
