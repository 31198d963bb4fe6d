"""Dev tokens (``AUTH_MODE=dev`` only)."""
