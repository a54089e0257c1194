// llama.cpp itself (node-llama-cpp's prebuilt CPU binary, no build) on a
// GGUF file Loralab wrote, for the engine's export tests
// (engine/tests/export_gguf.rs).
//
// usage: node generate.mjs REQUEST.json
// REQUEST: {"model": path, "lora": path | null, "prompt": [ids],
//           "max_tokens": n, "stop": [ids], "texts": [strings]}
// Prints {"tokens": [...], "tokenized": [[...], ...]}: the greedy tokens
// (temperature 0) after the prompt, up to a stop id (not included) or
// max_tokens, and each text as the file's own tokenizer encodes it
// (special tokens recognised).
import {readFileSync} from "node:fs";
import {getLlama} from "node-llama-cpp";

const request = JSON.parse(readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: request.model});
const context = await model.createContext({
    contextSize: 512,
    threads: 2,
    ...(request.lora ? {lora: {adapters: [{filePath: request.lora, scale: 1}]}} : {}),
});
const sequence = context.getSequence();
const stop = new Set(request.stop ?? []);
const tokens = [];
if (request.max_tokens > 0) {
    for await (const token of sequence.evaluate(request.prompt, {temperature: 0})) {
        if (stop.has(token)) break;
        tokens.push(token);
        if (tokens.length >= request.max_tokens) break;
    }
}
const tokenized = (request.texts ?? []).map((text) => model.tokenize(text, true));
console.log(JSON.stringify({tokens, tokenized}));
await context.dispose();
await model.dispose();
