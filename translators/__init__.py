"""Sans-I/O translation between the OpenAI Responses and Chat Completions API shapes."""
