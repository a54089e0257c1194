// llama.cpp's single-stream generation speed (node-llama-cpp's prebuilt CPU
// binary, 2 threads) on a GGUF, for scripts/bench-compare.sh: greedy, 128
// tokens after the first message of a JSONL chat dataset in ChatML
// (SmolLM2's template), twice, the second kept.
//
// usage: node speed.mjs MODEL.gguf DATASET.jsonl
// Prints the tokens/s of the tokens after the first.
import {readFileSync} from "node:fs";
import {getLlama} from "node-llama-cpp";

const [gguf, dataset] = process.argv.slice(2);
const messages = JSON.parse(readFileSync(dataset, "utf8").split("\n")[0])
    .messages.filter((m) => m.role !== "assistant");
const text = messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("")
    + "<|im_start|>assistant\n";
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: gguf});
const context = await model.createContext({contextSize: 1024, threads: 2});
let speed = 0;
for (let round = 0; round < 2; round++) {
    const sequence = context.getSequence();
    let count = 0;
    let first = 0;
    for await (const token of sequence.evaluate(model.tokenize(text, true), {temperature: 0})) {
        if (count === 0) first = performance.now();
        if (++count >= 128) break;
    }
    speed = (count - 1) / ((performance.now() - first) / 1000);
    sequence.dispose();
}
console.log(speed.toFixed(1));
await context.dispose();
await model.dispose();
