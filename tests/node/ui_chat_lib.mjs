// The AI SDK (`ai`) as a page uses it, in Node: DefaultChatTransport against the service's
// /stream/v1/ui/chat, the SDK's own Chat (AbstractChat: what useChat wraps) with a plain
// in-memory state, and readUIMessageStream to rebuild a message from chunks.
import { AbstractChat, DefaultChatTransport, readUIMessageStream } from "ai";

class MemoryState {
  constructor(messages = []) {
    this.messages = messages;
    this.status = "ready";
    this.error = undefined;
  }
  pushMessage(message) {
    this.messages = this.messages.concat(message);
  }
  popMessage() {
    this.messages = this.messages.slice(0, -1);
  }
  replaceMessage(index, message) {
    this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
  }
  snapshot(thing) {
    return structuredClone(thing);
  }
}

// useChat's Chat, minus React: the same request, stream and resume logic.
export class NodeChat extends AbstractChat {
  constructor({ messages, ...init }) {
    super({ ...init, state: new MemoryState(messages) });
  }
}

// A fetch that records each response's status and headers, and can be pointed at another
// node (`target.base`), as a load balancer would send a reconnect elsewhere.
export function routedFetch(target) {
  const seen = [];
  const fetcher = async (url, init) => {
    const routed = target.base ? String(url).replace(/^https?:\/\/[^/]+/, target.base) : url;
    const response = await fetch(routed, init);
    seen.push({
      url: routed,
      method: init?.method ?? "GET",
      status: response.status,
      headers: Object.fromEntries(response.headers.entries()),
    });
    return response;
  };
  return { fetcher, seen };
}

export function transport({ base, token, model, fetcher, body = {} }) {
  return new DefaultChatTransport({
    api: `${base}/stream/v1/ui/chat`,
    headers: { Authorization: `Bearer ${token}` },
    body: { model, ...body },
    fetch: fetcher,
  });
}

export function userMessage(text, id = `u-${Math.random().toString(36).slice(2)}`) {
  return { id, role: "user", parts: [{ type: "text", text }] };
}

// Read a chunk stream to its end (or until `stopWhen(chunks)` says so: then the read is
// aborted, as a closed tab would), with a bound so a stream that never ends fails the test.
export async function readChunks(stream, { stopWhen, abort, timeoutMs = 60000 } = {}) {
  const chunks = [];
  const reader = stream.getReader();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    reader.cancel("timeout").catch(() => {});
  }, timeoutMs);
  let failure = null;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      if (stopWhen && stopWhen(chunks)) {
        abort?.();
        await reader.cancel().catch(() => {});
        break;
      }
    }
  } catch (error) {
    failure = String(error?.message ?? error);
  } finally {
    clearTimeout(timer);
  }
  return { chunks, failure, timedOut };
}

// The message readUIMessageStream builds from the chunks (the SDK's own reducer), and the
// errors it reported.
export async function messageOf(chunks) {
  const errors = [];
  const stream = new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  let message = null;
  for await (const snapshot of readUIMessageStream({
    stream,
    onError: (e) => errors.push(String(e?.message ?? e)),
  })) {
    message = snapshot;
  }
  return { message, errors };
}

export function textOf(message) {
  if (!message) return "";
  return message.parts
    .filter((p) => p.type === "text")
    .map((p) => p.text)
    .join("");
}

export function deltaCount(chunks) {
  return chunks.filter((c) => c.type === "text-delta").length;
}

export async function waitFor(predicate, timeoutMs = 30000, what = "a condition") {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
