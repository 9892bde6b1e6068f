// openai_client.mjs - drives `switchyard engine --sim` with the official OpenAI Node client,
// unchanged (baseURL http://127.0.0.1:P/v1, apiKey "x"): completions and chat, plain and
// streaming (stream_options.include_usage), usage incl. prompt_tokens_details.cached_tokens on a
// repeated prompt, and the client's typed errors (NotFoundError for an unknown model).
// Usage: node openai_client.mjs <baseURL> <model>
// Prints one line per check and a final "N passed, M failed"; exit 0 iff nothing failed.
import OpenAI, { BadRequestError, NotFoundError } from 'openai';

const [baseURL, model] = process.argv.slice(2);
if (!baseURL || !model) {
  console.error('usage: node openai_client.mjs <baseURL> <model>');
  process.exit(2);
}
const client = new OpenAI({ baseURL, apiKey: 'x', maxRetries: 0, timeout: 30_000 });

let passed = 0;
let failed = 0;
let n = 0;
function check(name, cond, detail) {
  n += 1;
  if (cond) {
    passed += 1;
    console.log(`ok ${n} - ${name}`);
  } else {
    failed += 1;
    console.log(`not ok ${n} - ${name}`);
    if (detail !== undefined) console.log(`# ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
  }
}
async function step(name, fn) {
  try {
    await fn();
  } catch (e) {
    check(`${name} (threw)`, false, `${e?.constructor?.name}: ${e?.message}`);
  }
}
const bytes = (s) => Buffer.byteLength(s ?? '', 'utf8');

await step('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  check('models.list() contains the served model', ids.includes(model), ids);
});

await step('completions non-streaming', async () => {
  const r = await client.completions.create({
    model, prompt: 'Hello world', max_tokens: 8, ignore_eos: true,
  });
  check('completion id starts with cmpl-', r.id.startsWith('cmpl-'), r.id);
  check('completion object is text_completion', r.object === 'text_completion', r.object);
  check('completion model echoes the served name', r.model === model, r.model);
  check('completion text has 8 tokens (byte tokenizer)', bytes(r.choices[0].text) === 8, r.choices[0].text);
  check('completion finish_reason length', r.choices[0].finish_reason === 'length', r.choices[0].finish_reason);
  check('completion usage 12 + 8 = 20', r.usage?.prompt_tokens === 12 && r.usage?.completion_tokens === 8
        && r.usage?.total_tokens === 20, r.usage);
  check('completion usage.prompt_tokens_details.cached_tokens is a number',
        typeof r.usage?.prompt_tokens_details?.cached_tokens === 'number', r.usage);
});

await step('completions streaming', async () => {
  const stream = await client.completions.create({
    model, prompt: 'Hello world', max_tokens: 6, ignore_eos: true, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  let ids = new Set();
  for await (const c of stream) {
    chunks += 1;
    ids.add(c.id);
    if (c.choices.length) {
      text += c.choices[0].text ?? '';
      if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
    }
    if (c.usage) usage = c.usage;
  }
  check('streamed completion: one cmpl- id', ids.size === 1 && [...ids][0].startsWith('cmpl-'), [...ids]);
  check('streamed completion: 6 tokens of text', bytes(text) === 6, text);
  check('streamed completion: finish_reason length', finish === 'length', finish);
  check('streamed completion: usage chunk (include_usage)', usage?.completion_tokens === 6
        && usage?.prompt_tokens === 12 && usage?.total_tokens === 18, usage);
});

await step('chat non-streaming', async () => {
  const r = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, ignore_eos: true,
  });
  check('chat id starts with chatcmpl-', r.id.startsWith('chatcmpl-'), r.id);
  check('chat object is chat.completion', r.object === 'chat.completion', r.object);
  check('chat message role assistant', r.choices[0].message.role === 'assistant', r.choices[0].message);
  check('chat content has 5 tokens', bytes(r.choices[0].message.content) === 5, r.choices[0].message.content);
  check('chat finish_reason length', r.choices[0].finish_reason === 'length', r.choices[0].finish_reason);
  check('chat usage (ChatML prompt 21 tokens) + 5', r.usage?.prompt_tokens === 21
        && r.usage?.completion_tokens === 5 && r.usage?.total_tokens === 26, r.usage);
});

await step('chat max_completion_tokens', async () => {
  const r = await client.chat.completions.create({
    model, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }],
    max_completion_tokens: 3, ignore_eos: true,
  });
  check('chat max_completion_tokens 3 honoured', r.usage?.completion_tokens === 3, r.usage);
});

await step('chat streaming', async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 7, ignore_eos: true,
    stream: true, stream_options: { include_usage: true },
  });
  let first = null;
  let content = '';
  let finish = null;
  let usage = null;
  for await (const c of stream) {
    if (c.choices.length) {
      if (first === null) first = c.choices[0].delta;
      content += c.choices[0].delta?.content ?? '';
      if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
    }
    if (c.usage) usage = c.usage;
  }
  check('streamed chat: first delta carries role assistant', first?.role === 'assistant', first);
  check('streamed chat: 7 tokens of content', bytes(content) === 7, content);
  check('streamed chat: finish_reason length', finish === 'length', finish);
  check('streamed chat: usage chunk', usage?.completion_tokens === 7 && usage?.prompt_tokens === 21, usage);
});

await step('chat streaming helper', async () => {
  // the client's higher-level stream helper accumulates the final message
  const runner = client.chat.completions.stream({
    model, messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 4, ignore_eos: true,
  });
  const final = await runner.finalChatCompletion();
  check('chat.completions.stream() final message has 4 tokens',
        bytes(final.choices[0].message.content) === 4 && final.choices[0].finish_reason === 'length',
        final.choices[0]);
});

await step('prefix cache', async () => {
  const prompt = 'abcdefghi '.repeat(10); // 100 chars + BOS = 101 tokens -> 96 cached
  const r1 = await client.completions.create({ model, prompt, max_tokens: 1, ignore_eos: true });
  const r2 = await client.completions.create({ model, prompt, max_tokens: 1, ignore_eos: true });
  check('first 101-token prompt: prompt_tokens 101', r1.usage?.prompt_tokens === 101, r1.usage);
  check('repeated prompt: prompt_tokens_details.cached_tokens 96',
        r2.usage?.prompt_tokens_details?.cached_tokens === 96, r2.usage);
  const chat = [{ role: 'user', content: 'abcdefghi '.repeat(8) }];
  const c1 = await client.chat.completions.create({ model, messages: chat, max_tokens: 1, ignore_eos: true });
  const c2 = await client.chat.completions.create({ model, messages: chat, max_tokens: 1, ignore_eos: true });
  const p = c1.usage.prompt_tokens;
  check('repeated chat prompt: cached_tokens = floor((T-1)/16)*16',
        c2.usage?.prompt_tokens_details?.cached_tokens === Math.floor((p - 1) / 16) * 16,
        { p, usage: c2.usage });
});

await step('seed determinism', async () => {
  const a = await client.completions.create({ model, prompt: 'seeded', max_tokens: 16, ignore_eos: true, seed: 42, temperature: 1 });
  const b = await client.completions.create({ model, prompt: 'seeded', max_tokens: 16, ignore_eos: true, seed: 42, temperature: 1 });
  check('same seed -> same text', a.choices[0].text === b.choices[0].text, [a.choices[0].text, b.choices[0].text]);
});

await step('stream abort', async () => {
  const stream = await client.completions.create({
    model, prompt: 'abort me', max_tokens: 200, ignore_eos: true, stream: true,
  });
  // a fast server may merge tokens into few events (as vLLM does when the client lags), so
  // leave after the first event: the client aborts the HTTP request when the loop is left
  let k = 0;
  for await (const c of stream) {
    void c;
    k += 1;
    break;
  }
  check('client-side break out of a stream', k === 1, k);
  const r = await client.completions.create({ model, prompt: 'after abort', max_tokens: 2, ignore_eos: true });
  check('the server answers after an aborted stream', r.usage?.completion_tokens === 2, r.usage);
});

await step('unknown model', async () => {
  let err = null;
  try {
    await client.completions.create({ model: 'no-such-model', prompt: 'x', max_tokens: 1 });
  } catch (e) {
    err = e;
  }
  check('unknown model raises NotFoundError', err instanceof NotFoundError, `${err?.constructor?.name}: ${err?.message}`);
  check('NotFoundError status 404', err?.status === 404, err?.status);
  check('NotFoundError message names the model',
        /The model `no-such-model` does not exist\./.test(err?.message ?? ''), err?.message);
  check('NotFoundError carries the nested error type', err?.type === 'NotFoundError' || err?.error?.type === 'NotFoundError',
        err?.error);
  let err2 = null;
  try {
    const s = await client.chat.completions.create({
      model: 'no-such-model', messages: [{ role: 'user', content: 'x' }], stream: true,
    });
    for await (const c of s) void c;
  } catch (e) {
    err2 = e;
  }
  check('unknown model (chat, streaming) raises NotFoundError', err2 instanceof NotFoundError,
        `${err2?.constructor?.name}: ${err2?.message}`);
});

await step('bad request', async () => {
  let err = null;
  try {
    await client.completions.create({ model, prompt: 'x', max_tokens: -1 });
  } catch (e) {
    err = e;
  }
  check('negative max_tokens raises BadRequestError (400)', err instanceof BadRequestError && err.status === 400,
        `${err?.constructor?.name}: ${err?.message}`);
});

console.log(`1..${n}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && n > 0 ? 0 : 1);
