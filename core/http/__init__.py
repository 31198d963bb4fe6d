"""Litestar glue shared by both apps: OpenAI-shaped error handlers and bearer auth."""
