"""The REST API Lambda: OpenAI-compatible, Litestar wrapped by Mangum."""
