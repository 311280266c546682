// Foundation: the demo AI container `warmpool/chatbot-demo`.
// 1. The server module as a plain local process (bundled from source with esbuild): the
//    test knobs, error handling and signal handling, in seconds and without Docker.
// 2. The image under Docker: slow boot (503 then 200), the official `openai` client in
//    both modes, per-conversation memory, X-Instance-Id, and no container left behind.
import t from 'tap';
import Docker from 'dockerode';
import OpenAI from 'openai';
import { build } from 'esbuild';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  eventually,
  freePort,
  infraSkip,
  listContainersByLabel,
  removeContainersByLabel,
  repoRoot,
  testRunId,
} from '../src/index.js';

const IMAGE = 'warmpool/chatbot-demo';
const SOURCE = path.join(repoRoot, 'deploy/images/chatbot-demo/server.ts');
const MODEL = 'warmpool-demo';

function client(baseUrl: string): OpenAI {
  return new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: 'x', maxRetries: 0, timeout: 10_000 });
}

/** Waits for any HTTP answer from /health (the server is listening), returns the first one. */
function firstHealth(baseUrl: string, timeoutMs = 15_000): Promise<Response> {
  return eventually(() => fetch(`${baseUrl}/health`), { timeoutMs, intervalMs: 50, what: `${baseUrl} answering` });
}

async function waitReady(baseUrl: string, timeoutMs = 20_000): Promise<void> {
  await eventually(async () => (await fetch(`${baseUrl}/health`)).status === 200, { timeoutMs, intervalMs: 100, what: 'ready' });
}

interface LocalChatbot {
  url: string;
  proc: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

t.test('chatbot server as a local process', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'warmpool-chatbot-'));
  const bundle = path.join(dir, 'main.mjs');
  await build({ entryPoints: [SOURCE], bundle: true, platform: 'node', format: 'esm', target: 'node20', outfile: bundle, logLevel: 'error' });
  const procs: ChildProcess[] = [];
  t.teardown(async () => {
    await Promise.all(
      procs.map((p) =>
        p.exitCode !== null || p.signalCode !== null
          ? undefined
          : new Promise<void>((resolve) => {
              p.once('exit', () => resolve());
              p.kill('SIGKILL');
            }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(env: Record<string, string>): Promise<LocalChatbot> {
    const port = await freePort();
    const proc = spawn(process.execPath, [bundle], {
      env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), INSTANCE_ID: 'local-1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    procs.push(proc);
    let out = '';
    proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      proc.once('exit', (code, signal) => resolve({ code, signal })),
    );
    return { url: `http://127.0.0.1:${port}`, proc, exited, output: () => out };
  }

  await t.test('boot: 503 loading, then 200 ok; readiness is not early', async (t) => {
    const started = Date.now();
    const bot = await start({ BOOT_SECONDS: '0.8' });
    const first = await firstHealth(bot.url);
    t.equal(first.status, 503);
    t.same(await first.json(), { status: 'loading' });
    t.equal(first.headers.get('x-instance-id'), 'local-1');
    const early = await fetch(`${bot.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'too soon' }] }),
    });
    t.equal(early.status, 503, 'completions are refused while loading');
    t.ok(Number(early.headers.get('retry-after')) >= 1, 'with Retry-After');
    t.equal(((await early.json()) as { error: { code: string } }).error.code, 'model_loading');
    await waitReady(bot.url);
    t.ok(Date.now() - started >= 750, 'ready only after BOOT_SECONDS');
  });

  await t.test('bad requests get OpenAI-style errors and never crash the process', async (t) => {
    const bot = await start({ BOOT_SECONDS: '0' });
    await waitReady(bot.url);
    const post = (body: string) => fetch(`${bot.url}/v1/chat/completions`, { method: 'POST', body });
    const bad = await post('{"messages": [');
    t.equal(bad.status, 400);
    const err = (await bad.json()) as { error: { message: string; type: string; code: string } };
    t.equal(err.error.type, 'invalid_request_error');
    t.equal(err.error.code, 'invalid_json');
    t.type(err.error.message, 'string');
    t.equal(bad.headers.get('x-instance-id'), 'local-1', 'errors carry X-Instance-Id too');
    t.equal((await post('[]')).status, 400, 'a non-object body');
    t.equal((await post('{"messages": []}')).status, 400, 'no messages');
    t.equal((await post('{"messages": [{"role": 1}]}')).status, 400, 'a malformed message');
    t.equal((await post('x'.repeat(2 * 1024 * 1024))).status, 413, 'an oversized body');
    t.equal((await fetch(`${bot.url}/nope`)).status, 404, 'an unknown path');
    t.equal((await fetch(`${bot.url}/v1/chat/completions`)).status, 405, 'a wrong method');

    // A client that walks away in the middle of a stream.
    const ac = new AbortController();
    const res = await fetch(`${bot.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ stream: true, messages: [{ role: 'user', content: 'a b c d e f g h' }] }),
      signal: ac.signal,
    });
    const reader = res.body?.getReader();
    await reader?.read();
    ac.abort();
    const after = await client(bot.url).chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'still there?' }] });
    t.match(after.choices[0]?.message.content, /still there\?/, 'the process still serves');
    t.equal(bot.proc.exitCode, null, 'the process is alive');
  });

  await t.test('NEVER_READY=1 stays loading even with no boot time', async (t) => {
    const bot = await start({ BOOT_SECONDS: '0', NEVER_READY: '1' });
    const first = await firstHealth(bot.url);
    t.equal(first.status, 503);
    for (let i = 0; i < 3; i++) t.equal((await fetch(`${bot.url}/health`)).status, 503);
  });

  await t.test('UNHEALTHY_AFTER_SECONDS turns /health into 500', async (t) => {
    const bot = await start({ BOOT_SECONDS: '0', UNHEALTHY_AFTER_SECONDS: '0.6' });
    t.equal((await firstHealth(bot.url)).status, 200, 'healthy first');
    await eventually(async () => (await fetch(`${bot.url}/health`)).status === 500, { timeoutMs: 10_000, what: 'unhealthy' });
    const res = await fetch(`${bot.url}/health`);
    t.same(await res.json(), { status: 'unhealthy' });
  });

  await t.test('CRASH_AFTER_SECONDS exits with code 1', async (t) => {
    const bot = await start({ BOOT_SECONDS: '0', CRASH_AFTER_SECONDS: '0.5' });
    const { code } = await bot.exited;
    t.equal(code, 1);
    t.match(bot.output(), /simulated crash/);
  });

  await t.test('SIGTERM stops it promptly with code 0', async (t) => {
    const bot = await start({ BOOT_SECONDS: '0' });
    await waitReady(bot.url);
    const keepAlive = await fetch(`${bot.url}/health`); // leaves an idle keep-alive connection
    await keepAlive.text();
    const before = Date.now();
    bot.proc.kill('SIGTERM');
    const { code } = await bot.exited;
    t.equal(code, 0);
    t.ok(Date.now() - before < 1500, 'idle connections do not hold the shutdown');
  });
});

t.test('chatbot-demo image under Docker', { skip: infraSkip('docker') }, async (t) => {
  const docker = new Docker();
  const runId = testRunId();
  const label = 'warmpool.test';
  t.teardown(() => removeContainersByLabel(label, runId).then(() => undefined));

  const image = await docker.getImage(IMAGE).inspect().catch(() => undefined);
  if (!image) {
    t.fail(`image ${IMAGE} is missing: run npm run images`);
    return;
  }

  async function run(name: string, env: string[]): Promise<{ container: Docker.Container; url: string; startedAt: number }> {
    const container = await docker.createContainer({
      Image: IMAGE,
      name: `warmpool-test-${runId}-${name}`,
      Env: env,
      Labels: { [label]: runId },
      ExposedPorts: { '8000/tcp': {} },
      HostConfig: { PortBindings: { '8000/tcp': [{ HostIp: '127.0.0.1', HostPort: '0' }] } },
    });
    const startedAt = Date.now();
    await container.start();
    const info = await container.inspect();
    const hostPort = info.NetworkSettings.Ports['8000/tcp']?.[0]?.HostPort;
    if (!hostPort) throw new Error(`no published port for ${name}`);
    return { container, url: `http://127.0.0.1:${hostPort}`, startedAt };
  }

  await t.test('boot, completions in both modes, memory', async (t) => {
    const instanceId = `chatbot-${runId}`;
    const { container, url, startedAt } = await run('main', ['BOOT_SECONDS=2', `INSTANCE_ID=${instanceId}`]);
    t.teardown(() => container.remove({ force: true, v: true }).catch(() => undefined));

    const first = await firstHealth(url);
    t.equal(first.status, 503, 'loading first');
    t.same(await first.json(), { status: 'loading' });
    t.equal(first.headers.get('x-instance-id'), instanceId, 'X-Instance-Id from INSTANCE_ID');
    await waitReady(url);
    t.ok(Date.now() - startedAt >= 1800, `ready after the 2 s boot (${Date.now() - startedAt} ms)`);

    const openai = client(url);
    const models = await openai.models.list();
    t.same(models.data.map((m) => m.id), [MODEL], 'one model listed');

    const history: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'hello warmpool' }];
    const { data: reply, response } = await openai.chat.completions.create({ model: MODEL, messages: history }).withResponse();
    t.equal(response.headers.get('x-instance-id'), instanceId);
    t.equal(reply.object, 'chat.completion');
    const text1 = reply.choices[0]?.message.content ?? '';
    t.match(text1, /Turn 1/);
    t.match(text1, /hello warmpool/);
    t.equal(reply.choices[0]?.finish_reason, 'stop');
    t.ok((reply.usage?.total_tokens ?? 0) > 0, 'usage reported');

    history.push({ role: 'assistant', content: text1 }, { role: 'user', content: 'tell me more' });
    const { data: stream, response: streamResponse } = await openai.chat.completions
      .create({ model: MODEL, messages: history, stream: true })
      .withResponse();
    t.equal(streamResponse.headers.get('x-instance-id'), instanceId);
    t.match(streamResponse.headers.get('content-type') ?? '', /text\/event-stream/);
    const deltas: string[] = [];
    const arrivals: number[] = [];
    const objectTypes = new Set<string>();
    let finish: string | null = null;
    for await (const chunk of stream) {
      objectTypes.add(chunk.object);
      const choice = chunk.choices[0];
      if (choice?.delta.content) {
        deltas.push(choice.delta.content);
        arrivals.push(Date.now());
      }
      if (choice?.finish_reason) finish = choice.finish_reason;
    }
    const text2 = deltas.join('');
    t.same([...objectTypes], ['chat.completion.chunk'], 'every event is a chat.completion.chunk');
    t.ok(deltas.length >= 5, `streamed in ${deltas.length} chunks`);
    t.ok((arrivals.at(-1) ?? 0) - (arrivals[0] ?? 0) >= 50, 'chunks arrive over time, not in one burst');
    t.equal(finish, 'stop');
    t.match(text2, /Turn 2/, 'the second turn is counted');
    t.match(text2, /you said "tell me more"/);
    t.match(text2, /Before that you said "hello warmpool"/, 'the reply remembers the previous turn');

    const other = await openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'who am I?' }], user: 'someone-else' });
    t.match(other.choices[0]?.message.content ?? '', /Turn 1: .*first exchange/, 'another conversation has its own memory');

    const bad = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: '{not json' });
    t.equal(bad.status, 400);
    t.equal(bad.headers.get('x-instance-id'), instanceId);
    t.equal((await fetch(`${url}/health`)).status, 200, 'still healthy after a bad request');
  });

  await t.test('exit codes in a container: crash is 1, docker stop is prompt and 0', async (t) => {
    const crashing = await run('crash', ['BOOT_SECONDS=0', 'CRASH_AFTER_SECONDS=1']);
    t.teardown(() => crashing.container.remove({ force: true, v: true }).catch(() => undefined));
    const stopping = await run('stop', ['BOOT_SECONDS=0']);
    t.teardown(() => stopping.container.remove({ force: true, v: true }).catch(() => undefined));

    const crashed = (await crashing.container.wait()) as { StatusCode: number };
    t.equal(crashed.StatusCode, 1, 'CRASH_AFTER_SECONDS exits 1');

    await waitReady(stopping.url);
    const before = Date.now();
    await stopping.container.stop({ t: 10 });
    t.ok(Date.now() - before < 5000, `SIGTERM as PID 1 is handled (${Date.now() - before} ms)`);
    t.equal((await stopping.container.inspect()).State.ExitCode, 0);
  });

  t.same(await listContainersByLabel(label, runId), [], 'no container with this run label remains');
});
