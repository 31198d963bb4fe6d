"""The offline voice stand-in (``LLM_PROVIDER=local``): VAD, speech recognition, speech."""
