// Asks diglot (at the base URL given as the only argument) once with generateText and once with
// streamText through the AI SDK's OpenAI Responses provider, and prints what each call shows.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText } from "ai";

const baseURL = process.argv[2];
const model = createOpenAI({ baseURL, apiKey: "sk-test" }).responses("fake-model");

const generated = await generateText({ model, prompt: "What is 2 + 2?", maxRetries: 0 });

const streamed = streamText({ model, prompt: "What is 2 + 2?", maxRetries: 0 });
const reasoningDeltas = [];
const textDeltas = [];
for await (const part of streamed.fullStream) {
  if (part.type === "reasoning-delta") reasoningDeltas.push(part.text);
  if (part.type === "text-delta") textDeltas.push(part.text);
  if (part.type === "error") throw part.error;
}

console.log(
  JSON.stringify({
    generate: { reasoningText: generated.reasoningText ?? null, text: generated.text },
    stream: {
      reasoningText: (await streamed.reasoningText) ?? null,
      reasoningDeltas,
      textDeltas,
      text: await streamed.text,
    },
  }),
);
