"""WebSocket chat (SPEC section 6): JSON text frames, private streams and room replies on
the same engine as SSE, resumable by ``seq`` (the SSE ``id:``) on any node."""
