"""OpenAI-compatible wire schemas (msgspec structs)."""
