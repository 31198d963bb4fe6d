"""The model list."""
