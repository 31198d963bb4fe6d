// The two ways a private reply reaches the page, behind one interface for the chat:
//
//   const reply = transport.start(chatRequest, handlers);  // a new reply
//   const reply = transport.resume(saved, handlers);       // after a reload: saved = store.pending
//   reply.created -> Promise<{streamId, saved}>  // saved: what to persist to resume it later;
//                                                 // rejects (ApiError, network) if nothing started
//   reply.close()                                 // stop listening (the stream goes on)
//   transport.cancel(streamId) -> Promise         // the stream ends with done(cancelled)
//
// handlers: onStatus, onDelta, onDone, onError, onEvent(kind, data, seq), onConnection(state, info)
// (see reply-handlers.js). Each handler sees each seq once, in order.

/** SSE (SPEC 5): POST /stream/v1/streams, then EventSource on its events_url. */
export class SseTransport {
  constructor(client) {
    this.name = "sse";
    this.client = client; // a StreamClient (transport/sse-client.js)
  }

  start(request, handlers) {
    const reply = { sub: null, closed: false, created: null };
    reply.close = () => {
      reply.closed = true;
      if (reply.sub) reply.sub.close();
    };
    reply.created = this.client.create(request).then((stream) => {
      if (!reply.closed) reply.sub = this.client.consume(stream, handlers);
      return { streamId: stream.id, saved: { eventsUrl: stream.events_url } };
    });
    return reply;
  }

  resume(saved, handlers) {
    const sub = this.client.consume(
      { id: saved.streamId, events_url: saved.eventsUrl },
      handlers,
      { lastEventId: saved.lastEventId },
    );
    return {
      sub,
      created: Promise.resolve({ streamId: saved.streamId, saved: { eventsUrl: saved.eventsUrl } }),
      close: () => sub.close(),
    };
  }

  cancel(streamId) {
    return this.client.cancel(streamId);
  }
}

/** WebSocket (SPEC 6): chat.send -> stream.created, frames by seq, resume {stream_id, after_seq}. */
export class WsTransport {
  constructor(ws) {
    this.name = "ws";
    this.ws = ws; // a WsClient (transport/ws-client.js)
  }

  start(request, handlers) {
    const started = this.ws.startStream({ ...request, type: "chat.send" }, handlers);
    return {
      created: started.created.then(({ streamId }) => ({ streamId, saved: {} })),
      close: () => started.close(),
    };
  }

  resume(saved, handlers) {
    const follower = this.ws.follow(saved.streamId, handlers, { afterSeq: saved.lastEventId, resume: true });
    return {
      created: Promise.resolve({ streamId: saved.streamId, saved: {} }),
      close: () => follower.close(),
    };
  }

  cancel(streamId) {
    return this.ws.cancel(streamId);
  }
}
