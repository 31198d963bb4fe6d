// An agent loop with the official `openai` SDK for Node, as a user writes one: ask with
// tools, run the tool the model calls, send its result back, print the final answer.
//
//   node agent_loop.mjs '{"baseURL": ..., "apiKey": ..., "model": ..., "stream": true,
//                         "messages": [...], "tools": [...], "extra": {...},
//                         "results": {"get_weather": "18 C"}}'
//
// Prints one JSON line: each turn's assistant message and finish reason (as the SDK
// assembled it), the tool-call fragments of streamed turns (as the chunks carried them), and
// the request bodies the SDK sent (to compare with what reached the upstream).
import OpenAI from "openai";

const config = JSON.parse(process.argv[2]);
const sent = [];
const client = new OpenAI({
  baseURL: config.baseURL,
  apiKey: config.apiKey,
  maxRetries: 0,
  fetch: async (url, init) => {
    if (init && typeof init.body === "string") sent.push(JSON.parse(init.body));
    return fetch(url, init);
  },
});

async function turn(messages) {
  const body = { model: config.model, messages, tools: config.tools, ...(config.extra || {}) };
  if (!config.stream) {
    const completion = await client.chat.completions.create(body);
    const choice = completion.choices[0];
    return { message: choice.message, finish_reason: choice.finish_reason, fragments: [] };
  }
  const fragments = [];
  const stream = client.chat.completions.stream(body);
  stream.on("chunk", (chunk) => {
    for (const choice of chunk.choices || []) {
      for (const call of choice.delta?.tool_calls || []) fragments.push(call);
    }
  });
  const completion = await stream.finalChatCompletion();
  const choice = completion.choices[0];
  return { message: choice.message, finish_reason: choice.finish_reason, fragments };
}

const messages = [...config.messages];
const turns = [];
for (let round = 0; round < 4; round++) {
  const result = await turn(messages);
  turns.push(result);
  const calls = result.message.tool_calls || [];
  if (result.finish_reason !== "tool_calls" || calls.length === 0) break;
  messages.push({ role: "assistant", content: result.message.content ?? null, tool_calls: calls });
  for (const call of calls) {
    const output = config.results[call.function.name] ?? "no such tool";
    messages.push({ role: "tool", tool_call_id: call.id, content: output });
  }
}
console.log(JSON.stringify({ turns, sent }));
