// openai_model.mjs - the official OpenAI Node client against `switchyard engine --model` (a real
// GGUF model): greedy completions, plain and streamed, must give exactly the expected text;
// logprobs come back in vLLM's shape, identical streamed and not.
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
    // logprobs through the client: the same greedy text, one entry per token, the same values
    // streamed and not, sorted top dicts whose maximum is the greedy token's logprob
    const lr = await client.completions.create({ ...args, logprobs: 3 });
    const lp = lr.choices[0].logprobs;
    check("logprobs: the text is still the greedy text", lr.choices[0].text === expected);
    check("logprobs: one entry per token", lp && lp.tokens.length === Number(maxTokens) &&
          lp.token_logprobs.length === lp.tokens.length && lp.top_logprobs.length === lp.tokens.length &&
          lp.text_offset.length === lp.tokens.length);
    check("logprobs: tokens join to the text", lp.tokens.join("") === expected);
    check("logprobs: greedy logprob = max of the sorted top dict", lp.top_logprobs.every((d, i) => {
        const v = Object.values(d);
        return v.length === 3 && v.every((x, k) => k === 0 || v[k - 1] >= x) &&
            v[0] === lp.token_logprobs[i] && d[lp.tokens[i]] === lp.token_logprobs[i];
    }));
    const sl = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    const ls = await client.completions.create({ ...args, logprobs: 3, stream: true });
    for await (const c of ls) {
        const l = c.choices[0]?.logprobs;
        if (l) for (const k of Object.keys(sl)) sl[k].push(...l[k]);
    }
    check("logprobs: streamed chunks carry the same logprobs", JSON.stringify(sl) ===
          JSON.stringify({ tokens: lp.tokens, token_logprobs: lp.token_logprobs,
                           top_logprobs: lp.top_logprobs, text_offset: lp.text_offset }));
    try {
        await client.completions.create({ ...args, logprobs: 21 });
        check("logprobs 21 is refused", false, "accepted");
    } catch (e) {
        check("logprobs 21 is refused with 400 and vLLM's message", e.status === 400 &&
              String(e.message).includes("Requested sample logprobs of 21, which is greater than max allowed: 20"),
              `${e.status} ${e.message}`);
    }
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
