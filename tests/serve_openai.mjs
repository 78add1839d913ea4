// `retnet serve` through OpenAI's Node SDK (run by serve_openai.sh, which starts the servers).
//
//   RN_PLAIN_URL        a server without chat template or API key (.../v1)
//   RN_CHAT_URL         a server with --chat-template plain and --api-key RN_API_KEY
//   RN_EXPECTED_TEXT    `retnet generate -p "In the beginning" -n 24 --seed 7`'s output
//   RN_OPENAI_MODULE    the SDK's index.mjs
//
// Every check prints "pass" or "FAIL"; the exit status is the number of failures (0: passed).
import { pathToFileURL } from 'node:url';

const { default: OpenAI } = await import(pathToFileURL(process.env.RN_OPENAI_MODULE).href);
const MODEL = 'kjv-retnet';
const PROMPT = 'In the beginning';
let failures = 0;

function check(name, ok, detail = '') {
  if (ok) console.log(`  pass  ${name}`);
  else {
    console.log(`  FAIL  ${name}${detail ? ': ' + detail : ''}`);
    failures++;
  }
}
const show = (v) => JSON.stringify(v);

// Runs one case; an exception out of it is that case's failure, not the end of the script.
async function step(name, fn) {
  try {
    await fn();
  } catch (e) {
    check(name, false, `threw ${e?.constructor?.name}: ${e?.message}`);
  }
}

// No retries: a retried request would hide the status the server gave.
const plain = new OpenAI({ baseURL: process.env.RN_PLAIN_URL, apiKey: 'unused', maxRetries: 0, timeout: 30000 });
const chat = new OpenAI({ baseURL: process.env.RN_CHAT_URL, apiKey: process.env.RN_API_KEY, maxRetries: 0,
                          timeout: 30000 });
const wrongKey = new OpenAI({ baseURL: process.env.RN_CHAT_URL, apiKey: 'sk-wrong', maxRetries: 0, timeout: 30000 });

let plainText = null;
await step('completion', async () => {
  const r = await plain.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24, seed: 7 });
  check('completion: object', r.object === 'text_completion', show(r.object));
  check('completion: one choice', r.choices.length === 1, show(r.choices));
  const c = r.choices[0];
  plainText = c.text;
  check('completion: text non-empty', typeof c.text === 'string' && c.text.length > 0, show(c.text));
  check('completion: finish_reason length (24 tokens asked, no stop)', c.finish_reason === 'length',
        show(c.finish_reason));
  check('completion: usage.completion_tokens 24', r.usage?.completion_tokens === 24, show(r.usage));
  check('completion: usage.prompt_tokens > 0', r.usage?.prompt_tokens > 0, show(r.usage));
  check('completion: usage.total_tokens = prompt + completion',
        r.usage?.total_tokens === r.usage?.prompt_tokens + r.usage?.completion_tokens, show(r.usage));
  check('completion: text equals `retnet generate` with the same seed', c.text === process.env.RN_EXPECTED_TEXT,
        `${show(c.text)} vs ${show(process.env.RN_EXPECTED_TEXT)}`);
});

await step('completion, streamed', async () => {
  const stream = await plain.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24, seed: 7,
                                                  stream: true, stream_options: { include_usage: true } });
  let text = '', chunks = 0, finish = null, usage = null;
  for await (const chunk of stream) {
    chunks++;
    for (const c of chunk.choices ?? []) {
      text += c.text ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  check('stream: more than one chunk', chunks > 1, `${chunks} chunks`);
  check('stream: chunks concatenate to the non-streamed text (same seed)', text === plainText,
        `${show(text)} vs ${show(plainText)}`);
  check('stream: finish_reason length', finish === 'length', show(finish));
  check('stream: include_usage gives usage, 24 completion tokens', usage?.completion_tokens === 24, show(usage));
});

await step('completion, stop string', async () => {
  // The first word of the known text as a stop: the answer ends before it, finish_reason stop.
  const word = (plainText ?? '').trim().split(/\s+/)[1];
  if (!word) return check('stop: a word to stop at', false, show(plainText));
  const r = await plain.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24, seed: 7, stop: [word] });
  const c = r.choices[0];
  check('stop: finish_reason stop', c.finish_reason === 'stop', show(c.finish_reason));
  check('stop: text is the prefix before the stop string', c.text === plainText.slice(0, plainText.indexOf(word)),
        `${show(c.text)} (stop ${show(word)})`);
});

let chatText = null;
await step('chat', async () => {
  const r = await chat.chat.completions.create({
    model: MODEL, max_tokens: 16, seed: 11,
    messages: [{ role: 'system', content: 'Answer as scripture.' }, { role: 'user', content: 'Who made the light?' }],
  });
  check('chat: object', r.object === 'chat.completion', show(r.object));
  const c = r.choices?.[0];
  chatText = c?.message?.content;
  check('chat: role assistant', c?.message?.role === 'assistant', show(c?.message));
  check('chat: content non-empty', typeof chatText === 'string' && chatText.length > 0, show(chatText));
  check('chat: finish_reason stop or length', ['stop', 'length'].includes(c?.finish_reason), show(c?.finish_reason));
  check('chat: usage within max_tokens 16', r.usage?.completion_tokens > 0 && r.usage?.completion_tokens <= 16 &&
        r.usage?.total_tokens === r.usage?.prompt_tokens + r.usage?.completion_tokens, show(r.usage));
});

await step('chat, streamed', async () => {
  const stream = await chat.chat.completions.create({
    model: MODEL, max_tokens: 16, seed: 11, stream: true,
    messages: [{ role: 'system', content: 'Answer as scripture.' }, { role: 'user', content: 'Who made the light?' }],
  });
  let text = '', chunks = 0, finish = null, role = null;
  const objects = new Set();
  for await (const chunk of stream) {
    chunks++;
    objects.add(chunk.object);
    for (const c of chunk.choices ?? []) {
      if (c.delta?.role) role = c.delta.role;
      text += c.delta?.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  check('chat stream: every chunk is a chat.completion.chunk',
        objects.size === 1 && objects.has('chat.completion.chunk'), show([...objects]));
  check('chat stream: more than one chunk', chunks > 1, `${chunks} chunks`);
  check('chat stream: a delta with role assistant', role === 'assistant', show(role));
  check('chat stream: deltas concatenate to the non-streamed content', text === chatText,
        `${show(text)} vs ${show(chatText)}`);
  check('chat stream: finish_reason stop or length', ['stop', 'length'].includes(finish), show(finish));
});

await step('models.list', async () => {
  const ids = [];
  for await (const m of plain.models.list()) ids.push(m.id);
  check('models.list: the served model', ids.length === 1 && ids[0] === MODEL, show(ids));
  const keyed = [];
  for await (const m of chat.models.list()) keyed.push(m.id);
  check('models.list with the right key', keyed.includes(MODEL), show(keyed));
});

async function expectError(name, status, cls, fn, pattern) {
  try {
    const r = await fn();
    check(name, false, `no error; got ${show(r).slice(0, 200)}`);
  } catch (e) {
    check(`${name}: an APIError`, e instanceof OpenAI.APIError, `${e?.constructor?.name}: ${e?.message}`);
    check(`${name}: ${cls.name}`, e instanceof cls, e?.constructor?.name);
    check(`${name}: status ${status}`, e?.status === status, show(e?.status));
    if (pattern) check(`${name}: message names the problem`, pattern.test(e?.message ?? ''), show(e?.message));
  }
}

await expectError('max_tokens -1', 400, OpenAI.BadRequestError,
                  () => plain.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: -1 }), /max_tokens/);
await expectError('temperature "hot"', 400, OpenAI.BadRequestError,
                  () => plain.completions.create({ model: MODEL, prompt: PROMPT, temperature: 'hot' }), /temperature/);
await expectError('chat without a template', 400, OpenAI.BadRequestError,
                  () => plain.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }));
await expectError('wrong API key', 401, OpenAI.AuthenticationError,
                  () => wrongKey.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 4 }));
await expectError('wrong API key, models.list', 401, OpenAI.AuthenticationError,
                  () => wrongKey.models.list());
// A streamed request refused before its first byte is an error too, not an empty stream.
await expectError('max_tokens -1, streamed', 400, OpenAI.BadRequestError,
                  () => plain.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: -1, stream: true }));

console.log(failures ? `serve_openai.mjs: ${failures} failures` : 'serve_openai.mjs: all passed');
process.exitCode = failures ? 1 : 0;
