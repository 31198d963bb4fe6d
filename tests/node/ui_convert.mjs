// The AI SDK's own conversion of UI messages (convertToModelMessages), for comparing with
// what the service sends upstream:  node ui_convert.mjs '<JSON UI messages>'
import { convertToModelMessages } from "ai";

const messages = JSON.parse(process.argv[2]);
const converted = await convertToModelMessages(messages);
// URLs (file parts) as strings, the way they are serialised
console.log(JSON.stringify(converted, (key, value) => (value instanceof URL ? value.href : value)));
