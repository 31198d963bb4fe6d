"""Shared domain used by both runtimes: settings, auth, model providers, OpenAI schemas, errors."""
