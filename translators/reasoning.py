"""Reasoning: Responses `reasoning` items <-> Chat `reasoning_content` and `<think>` text."""
