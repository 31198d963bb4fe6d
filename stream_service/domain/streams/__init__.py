"""Durable streams: create, read (SSE, resumable), status, cancel."""
