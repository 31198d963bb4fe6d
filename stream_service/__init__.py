"""The streaming service: resumable SSE (and WebSocket) token streams, run in a container."""
