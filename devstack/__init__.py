"""``make dev``: the whole stack on one port with embedded defaults (no AWS, no API key)."""
