"""diglot: Responses clients over Chat Completions backends, and the other way round."""

__version__ = "0.1.0"
