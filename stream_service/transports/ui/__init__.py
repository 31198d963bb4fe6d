"""The AI SDK's UI message stream protocol (``useChat``'s ``DefaultChatTransport``): stream
events rendered as UI message chunks, and UI messages read as chat messages."""

from stream_service.transports.ui.chunks import UI_STREAM_HEADERS, UiMessageChunks
from stream_service.transports.ui.messages import to_chat_messages

__all__ = ["UI_STREAM_HEADERS", "UiMessageChunks", "to_chat_messages"]
