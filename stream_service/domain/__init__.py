"""HTTP endpoints of the stream service, one folder per feature."""
