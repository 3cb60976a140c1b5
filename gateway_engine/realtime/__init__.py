"""Realtime push: channels declared in ``channels.d``, served over WebSocket, SSE and Socket.IO."""
