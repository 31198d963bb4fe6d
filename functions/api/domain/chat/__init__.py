"""Non-streaming chat completions."""
