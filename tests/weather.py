"""The weather tool and agent that several end-to-end tests run through diglot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents import Agent, Model, Runner, function_tool, set_tracing_disabled

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
INSTRUCTIONS = "Answer weather questions with the tool."


async def run_weather_agent(
    model: Model, streamed: bool, on_raw_event: Callable[[Any], None]
) -> tuple[str, list[str]]:
    """The agent's final answer and the cities its tool was asked about."""
    set_tracing_disabled(True)
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        asked.append(city)
        return "sunny"

    agent = Agent(name="weather", instructions=INSTRUCTIONS, tools=[get_weather], model=model)
    if streamed:
        run = Runner.run_streamed(agent, "What's the weather in Paris?")
        async for event in run.stream_events():
            if event.type == "raw_response_event":
                on_raw_event(event.data)
        return str(run.final_output), asked
    result = await Runner.run(agent, "What's the weather in Paris?")
    return str(result.final_output), asked
