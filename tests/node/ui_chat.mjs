// Scenarios of the AI SDK's chat against the service, one per run:
//   node ui_chat.mjs '<JSON: {"scenario": ..., ...}>'   -> one JSON line with what happened.
import { lastAssistantMessageIsCompleteWithToolCalls } from "ai";
import {
  NodeChat,
  deltaCount,
  messageOf,
  readChunks,
  routedFetch,
  textOf,
  transport,
  userMessage,
  waitFor,
} from "./ui_chat_lib.mjs";

const args = JSON.parse(process.argv[2]);

function assistantText(chat) {
  const last = chat.messages.at(-1);
  return last?.role === "assistant" ? textOf(last) : "";
}

const scenarios = {
  // One send through DefaultChatTransport.sendMessages; optionally stop reading after N
  // text deltas (a closed tab: the connection goes, the reply goes on on the server).
  async send({ base, token, model, chatId, text, body, stopAfterDeltas, messages }) {
    const route = routedFetch({});
    const abort = new AbortController();
    const stream = await transport({ base, token, model, fetcher: route.fetcher, body }).sendMessages({
      chatId,
      messages: messages ?? [userMessage(text)],
      trigger: "submit-message",
      messageId: undefined,
      abortSignal: abort.signal,
    });
    const read = await readChunks(stream, {
      stopWhen: stopAfterDeltas ? (chunks) => deltaCount(chunks) >= stopAfterDeltas : undefined,
      abort: () => abort.abort(),
    });
    const built = await messageOf(read.chunks);
    return { ...read, ...built, text: textOf(built.message), response: route.seen[0] };
  },

  // useChat({ resume: true }) on mount: reconnectToStream, 204 -> null.
  async resume({ base, token, model, chatId }) {
    const route = routedFetch({});
    const stream = await transport({ base, token, model, fetcher: route.fetcher }).reconnectToStream({
      chatId,
    });
    if (stream === null) return { status: route.seen[0].status, response: route.seen[0] };
    const read = await readChunks(stream);
    const built = await messageOf(read.chunks);
    return {
      status: route.seen[0].status,
      response: route.seen[0],
      ...read,
      ...built,
      text: textOf(built.message),
    };
  },

  // The SDK's Chat: send on node A, abort mid-reply (stop(): the connection closes), then
  // resumeStream() reaches node B (as a reload behind a load balancer would).
  async abortThenResume({ baseA, baseB, token, model, chatId, text, abortAfterChars }) {
    const target = { base: null };
    const route = routedFetch(target);
    const chat = new NodeChat({
      id: chatId,
      messages: [],
      transport: transport({ base: baseA, token, model, fetcher: route.fetcher }),
    });
    const sending = chat.sendMessage({ text });
    await waitFor(() => assistantText(chat).length >= abortAfterChars, 30000, "the first text");
    await chat.stop();
    await sending;
    const partial = assistantText(chat);
    target.base = baseB;
    await chat.resumeStream();
    return {
      partial,
      status: chat.status,
      error: chat.error ? String(chat.error.message) : null,
      messages: chat.messages,
      seen: route.seen,
    };
  },

  // The page's stop button: POST {chat}/stop (here on another node) while the reply streams;
  // the open stream must end by itself with abort then finish.
  async stop({ base, stopBase, token, model, chatId, text, stopAfterDeltas }) {
    const stream = await transport({ base, token, model }).sendMessages({
      chatId,
      messages: [userMessage(text)],
      trigger: "submit-message",
      messageId: undefined,
    });
    const reader = stream.getReader();
    const chunks = [];
    let stopped = null;
    let stopIndex = null;
    let stopAnswer = null;
    const timer = setTimeout(() => reader.cancel("timeout").catch(() => {}), 60000);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      if (stopped === null && deltaCount(chunks) >= stopAfterDeltas) {
        stopped = Date.now();
        stopIndex = chunks.length;
        const answer = await fetch(`${stopBase}/stream/v1/ui/chat/${encodeURIComponent(chatId)}/stop`, {
          method: "POST",
          headers: { Authorization: `Bearer ${token}` },
        });
        stopAnswer = { status: answer.status, body: await answer.json() };
      }
    }
    clearTimeout(timer);
    const built = await messageOf(chunks);
    return {
      chunks,
      stopAnswer,
      endedMsAfterStop: stopped === null ? null : Date.now() - stopped,
      deltasAfterStop: stopIndex === null ? null : deltaCount(chunks.slice(stopIndex)),
      ...built,
      text: textOf(built.message),
    };
  },

  // Client-side tools, as a page runs them: the model's call arrives as a tool part, the
  // page adds its output, and the Chat sends the conversation again by itself; the reply
  // continues the same assistant message.
  async toolLoop({ base, token, model, chatId, text, tools, output }) {
    const chat = new NodeChat({
      id: chatId,
      messages: [],
      transport: transport({ base, token, model, body: { tools } }),
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls,
      onToolCall: ({ toolCall }) => {
        chat.addToolOutput({ tool: toolCall.toolName, toolCallId: toolCall.toolCallId, output });
      },
    });
    await chat.sendMessage({ text });
    await waitFor(
      () => chat.status === "ready" && textOf(chat.messages.at(-1)).length > 0,
      30000,
      "the answer after the tool output",
    );
    return { status: chat.status, error: chat.error ? String(chat.error.message) : null, messages: chat.messages };
  },

  // A page reloaded after its reply's node died: the Chat resumes on mount and must end in
  // an error it shows, with the text that was stored.
  async chatResume({ base, token, model, chatId, userText }) {
    const chat = new NodeChat({
      id: chatId,
      messages: [userMessage(userText, "u-1")],
      transport: transport({ base, token, model }),
    });
    await chat.resumeStream();
    return {
      status: chat.status,
      error: chat.error ? String(chat.error.message) : null,
      messages: chat.messages,
    };
  },
};

const run = scenarios[args.scenario];
if (!run) throw new Error(`unknown scenario ${args.scenario}`);
const started = Date.now();
const result = await run(args);
console.log(JSON.stringify({ ...result, elapsedMs: Date.now() - started }));
