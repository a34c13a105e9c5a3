"""Token usage in both shapes."""
