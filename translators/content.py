"""Content parts: Responses `input_*`/`output_*` parts <-> Chat Completions message content."""
