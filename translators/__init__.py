"""Sans-I/O translation between the OpenAI Responses and Chat Completions API shapes.

`translators/README.md` maps each API field and stream event to the module that translates it.
"""
