// The `openai` SDK's own agent loop, `chat.completions.runTools`: it calls the JavaScript
// function the model asks for, sends the result back, and loops until the model answers.
//
//   node run_tools.mjs '{"baseURL": ..., "apiKey": ..., "model": ..., "stream": false,
//                        "prompt": "...", "tool_choice": "required"?}'
//
// Prints one JSON line: the final answer, the arguments each call got, the conversation.
import OpenAI from "openai";

const config = JSON.parse(process.argv[2]);
const client = new OpenAI({ baseURL: config.baseURL, apiKey: config.apiKey, maxRetries: 0 });
const calls = [];

const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Today's weather in a city.",
      parameters: {
        type: "object",
        properties: { city: { type: "string" }, days: { type: "integer", minimum: 1 } },
        required: ["city", "days"],
        additionalProperties: false,
      },
      parse: JSON.parse,
      function: async (args) => {
        calls.push(args);
        return `sunny in ${args.city} for ${args.days} days`;
      },
    },
  },
];

const body = {
  model: config.model,
  messages: [{ role: "user", content: config.prompt }],
  tools,
  ...(config.tool_choice ? { tool_choice: config.tool_choice } : {}),
  ...(config.stream ? { stream: true } : {}),
};
const runner = client.chat.completions.runTools(body);
const final = await runner.finalContent();
console.log(JSON.stringify({ final, calls, messages: runner.messages }));
