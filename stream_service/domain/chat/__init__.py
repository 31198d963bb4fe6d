"""OpenAI-compatible streaming chat completions."""
