"""Vertical slices of the REST API, one folder per feature."""
