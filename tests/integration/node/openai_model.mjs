// openai_model.mjs - the official OpenAI Node client against `switchyard engine --model` (a real
// GGUF model): greedy completions, plain and streamed, must give exactly the expected text.
// Usage: node openai_model.mjs BASE_URL MODEL PROMPT EXPECTED_COMPLETION MAX_TOKENS
// Prints TAP-like lines and ends with "N passed, M failed".
import OpenAI from "openai";

const [base, model, prompt, expected, maxTokens] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base, apiKey: "none", maxRetries: 0, timeout: 60000 });
let passed = 0, failed = 0;
function check(name, ok, detail) {
    if (ok) { passed++; console.log(`ok - ${name}`); }
    else { failed++; console.log(`not ok - ${name}${detail ? ": " + detail : ""}`); }
}
const args = { model, prompt, max_tokens: Number(maxTokens), temperature: 0 };
try {
    const r = await client.completions.create(args);
    check("completion text equals the expected greedy text", r.choices[0].text === expected,
          JSON.stringify(r.choices[0].text));
    check("usage counts the tokens", r.usage.completion_tokens === Number(maxTokens));
    let text = "", chunks = 0;
    const stream = await client.completions.create({ ...args, stream: true });
    for await (const c of stream) { text += c.choices[0]?.text ?? ""; chunks++; }
    check("streamed deltas join to the same text", text === expected, JSON.stringify(text));
    check("the stream carried the text in chunks", chunks >= 1, String(chunks)); // the engine merges deltas when the reader lags
    try {
        await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] });
        check("chat without a template is refused", false, "accepted");
    } catch (e) {
        check("chat without a template is refused with 400", e.status === 400, String(e.status));
    }
} catch (e) {
    check("client calls", false, String(e));
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
