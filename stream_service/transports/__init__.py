"""Transports: each renders the engine's events in its wire format (SSE native, SSE in
OpenAI's chunk format, WebSocket) and writes them to its connections."""
