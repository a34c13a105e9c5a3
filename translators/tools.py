"""Tools, tool choice and tool calls in both shapes, including custom and namespaced tools."""
