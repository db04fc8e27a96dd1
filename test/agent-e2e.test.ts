import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeCerts } from './make-certs.js';
import { proxySecretPlaceholder } from '../src/cell/resolve-secrets.js';
import { agentcellAsync, cellDirOf, type CliResult, type Sandbox, listen, agentSandbox } from './helpers.js';
import { anthropicStub, geminiStub, openaiResponsesStub, type StubRequest } from './provider-stubs.js';

/**
 * Claude Code and Codex, the real CLIs from npm, in real cells, against stubs of their
 * providers' APIs on loopback. The stubs hold certificates for api.anthropic.com and
 * api.openai.com from a test CA that only the gateway trusts (`upstream_ca`); `resolve`
 * sends those names to 127.0.0.1. The key lives in agentcell's environment only: the
 * gateway adds it, the cell holds a placeholder.
 */

const ANTHROPIC_KEY = 'sk-ant-real-e2e-5b1f0c9d8e7a6b5c4d3e';
const OPENAI_KEY = 'sk-proj-real-e2e-0a1b2c3d4e5f6a7b8c9d';
const GEMINI_KEY = 'AIza-real-e2e-1c2d3e4f5a6b7c8d9e0f';

function runCli(args: string[], sb: Sandbox, env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  // A first run installs the CLI from npm.
  return agentcellAsync(sb, args, { env, timeoutMs: Number(process.env['E2E_KILL_MS'] ?? 600_000) });
}
/** A file the cell wrote, found in the cell's overlay layers (it is not on the host until accepted). */
function layerFile(sb: Sandbox, name: string): string {
  const found = findFile(join(cellDirOf(sb), 'layers'), name);
  assert.ok(found, `${name} is in the cell's layers`);
  return readFileSync(found, 'utf8');
}

function findFile(dir: string, name: string): string | undefined {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return undefined; // overlayfs work dirs are mode 000
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isFile() && entry.name === name) return path;
    if (entry.isDirectory()) {
      const found = findFile(path, name);
      if (found) return found;
    }
  }
  return undefined;
}

describe('agents end to end: real CLIs in a cell, stub providers through the gateway', () => {
  let certDir: string;
  let ca: string;
  let server: Server;
  let port: number;
  const anthropicSeen: StubRequest[] = [];
  const openaiSeen: StubRequest[] = [];
  const geminiSeen: StubRequest[] = [];
  let route: 'anthropic' | 'openai' | 'gemini' = 'anthropic';
  let handlers: Record<'anthropic' | 'openai' | 'gemini', (req: IncomingMessage, res: ServerResponse) => void>;

  before(async () => {
    certDir = mkdtempSync(join(tmpdir(), 'agentcell-agent-e2e-'));
    const certs = await makeCerts(certDir, 'stub provider', [
      'api.anthropic.com',
      'api.openai.com',
      'generativelanguage.googleapis.com',
    ]);
    ca = certs.ca;
    server = createServer({ key: certs.key, cert: certs.cert }, (req, res) => handlers[route](req, res));
    port = await listen(server);
  });

  after(() => {
    server.close();
    rmSync(certDir, { recursive: true, force: true });
  });

  function policySandbox(policy: string[]): Sandbox {
    const sb = agentSandbox({ 'README.md': '# a repo\n', 'agentcell.toml': [...policy, ''].join('\n') });
    return sb;
  }

  it('claude -p: the stub’s Write tool call lands in the cell, the key only at the stub, spy shows it', async () => {
    route = 'anthropic';
    anthropicSeen.length = 0;
    const sb = policySandbox([
      '[network]',
      'resolve = { "api.anthropic.com" = "127.0.0.1" }',
      `upstream_ca = [${JSON.stringify(ca)}]`,
      '[env]',
      `ANTHROPIC_BASE_URL = "https://api.anthropic.com:${port}"`,
    ]);
    handlers = {
      anthropic: anthropicStub(anthropicSeen, {
        file: join(sb.workspace, 'hello.txt'),
        content: 'written by the stub via Claude Code\n',
        envDump: join(sb.workspace, 'cell-env.txt'),
      }),
      openai: () => undefined,
      gemini: () => undefined,
    };
    try {
      const r = await runCli(['claude', '-p', 'create hello.txt', '--model', 'claude-stub-1'], sb, {
        ANTHROPIC_API_KEY: ANTHROPIC_KEY,
      });
      assert.equal(r.status, 0, `claude failed:\n${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /Wrote the file\./);

      const diff = JSON.parse((await runCli(['diff', '--json'], sb)).stdout) as { path: string; change: string }[];
      assert.ok(
        diff.some((c) => c.path === 'hello.txt' && c.change === 'added'),
        JSON.stringify(diff),
      );
      assert.equal(layerFile(sb, 'hello.txt'), 'written by the stub via Claude Code\n');

      const messages = anthropicSeen.filter((s) => s.url.startsWith('/v1/messages'));
      assert.ok(messages.length >= 3, `the stub saw ${anthropicSeen.map((s) => s.url).join(', ')}`);
      for (const m of messages) assert.equal(m.headers['x-api-key'], ANTHROPIC_KEY, 'the gateway injected the key');
      // The cell brief reached the model through Claude Code's own user instructions (~/.claude/CLAUDE.md).
      assert.match(JSON.stringify(messages[0]?.body), /You are working inside an agentcell cell/);

      // The agent's own shell saw a placeholder, never the key.
      const cellEnv = layerFile(sb, 'cell-env.txt');
      assert.match(cellEnv, new RegExp(`^ANTHROPIC_API_KEY=${proxySecretPlaceholder('ANTHROPIC_API_KEY')}$`, 'm'));
      assert.ok(!cellEnv.includes(ANTHROPIC_KEY), 'the key is not in the cell env');
      assert.ok(!JSON.stringify(layerFiles(sb)).includes(ANTHROPIC_KEY), 'nor in any file the cell wrote');

      const spy = await runCli(['spy'], sb);
      assert.equal(spy.status, 0, spy.stderr);
      assert.match(spy.stdout, /anthropic claude-stub-1 POST api\.anthropic\.com\/v1\/messages/);
      assert.match(spy.stdout, /tool call Write/);
      assert.ok(!spy.stdout.includes(ANTHROPIC_KEY));
      const receipt = JSON.parse((await runCli(['receipt', 'show', '--format', 'json'], sb)).stdout) as {
        tools: Record<string, string>;
        mounts: { source: string; target: string; mode: string }[];
        turns?: { turn: number; contentHash: string | null }[];
      };
      assert.equal(receipt.tools['claude'], '2.1.197');
      // A turn checkpoint per Messages request the agent made (docs/sessions.md, "Turn checkpoints").
      const requests = anthropicSeen.filter((s) => s.url.split('?')[0] === '/v1/messages').length;
      assert.deepEqual(
        receipt.turns?.map((t) => [t.turn, /^sha256:/.test(t.contentHash ?? '')]),
        Array.from({ length: requests }, (_, i) => [i + 1, true]),
      );
      const briefMounts = receipt.mounts.filter((m) => m.source.endsWith('agent-brief.md'));
      assert.deepEqual(
        briefMounts.map((m) => [m.target, m.mode]),
        [
          [join(sb.home, 'AGENTCELL.md'), 'ro'],
          [join(sb.home, '.claude/CLAUDE.md'), 'ro'],
        ],
      );
    } finally {
      sb.cleanup();
    }
  });

  it('codex exec: the stub’s shell call lands in the cell, the key only at the stub, spy shows it', async () => {
    route = 'openai';
    openaiSeen.length = 0;
    const sb = policySandbox([
      '[network]',
      'resolve = { "api.openai.com" = "127.0.0.1" }',
      `upstream_ca = [${JSON.stringify(ca)}]`,
    ]);
    handlers = {
      anthropic: () => undefined,
      gemini: () => undefined,
      openai: openaiResponsesStub(openaiSeen, {
        file: join(sb.workspace, 'hello.txt'),
        content: 'written by the stub via Codex\n',
        envDump: join(sb.workspace, 'cell-env.txt'),
      }),
    };
    try {
      const r = await runCli(
        [
          ...['codex', '--', 'exec', '--skip-git-repo-check', '-m', 'gpt-stub-1'],
          // Codex 0.169 takes its API base from config (OPENAI_BASE_URL is not read by exec).
          ...['-c', `openai_base_url="https://api.openai.com:${port}/v1"`, 'create hello.txt'],
        ],
        sb,
        { OPENAI_API_KEY: OPENAI_KEY },
      );
      assert.equal(r.status, 0, `codex failed:\n${r.stdout}\n${r.stderr}`);

      const diff = JSON.parse((await runCli(['diff', '--json'], sb)).stdout) as { path: string; change: string }[];
      assert.ok(
        diff.some((c) => c.path === 'hello.txt' && c.change === 'added'),
        JSON.stringify(diff),
      );
      assert.equal(layerFile(sb, 'hello.txt'), 'written by the stub via Codex\n');

      const responses = openaiSeen.filter((s) => s.url.startsWith('/v1/responses'));
      assert.ok(responses.length >= 3, `the stub saw ${openaiSeen.map((s) => s.url).join(', ')}`);
      for (const q of responses) assert.equal(q.headers['authorization'], `Bearer ${OPENAI_KEY}`);
      // Codex reads ~/.codex/AGENTS.md as the user's instructions: the cell brief is there.
      // (the first request may be a WebSocket upgrade with no body; the POSTs carry the instructions)
      assert.match(JSON.stringify(responses.find((q) => q.body)?.body), /You are working inside an agentcell cell/);

      const cellEnv = layerFile(sb, 'cell-env.txt');
      assert.match(cellEnv, new RegExp(`^OPENAI_API_KEY=${proxySecretPlaceholder('OPENAI_API_KEY')}$`, 'm'));
      assert.ok(!cellEnv.includes(OPENAI_KEY), 'the key is not in the cell env');
      assert.ok(!JSON.stringify(layerFiles(sb)).includes(OPENAI_KEY), 'nor in any file the cell wrote');

      const spy = await runCli(['spy'], sb);
      assert.equal(spy.status, 0, spy.stderr);
      assert.match(spy.stdout, /openai-responses gpt-stub-1 POST api\.openai\.com\/v1\/responses/);
      assert.ok(!spy.stdout.includes(OPENAI_KEY));
    } finally {
      sb.cleanup();
    }
  });
  it('gemini -p: the stub’s write_file call lands in the cell, the key only at the stub, spy shows it', async () => {
    route = 'gemini';
    geminiSeen.length = 0;
    const sb = policySandbox([
      '[network]',
      'resolve = { "generativelanguage.googleapis.com" = "127.0.0.1" }',
      `upstream_ca = [${JSON.stringify(ca)}]`,
      '[env]',
      `GOOGLE_GEMINI_BASE_URL = "https://generativelanguage.googleapis.com:${port}"`,
    ]);
    handlers = {
      anthropic: () => undefined,
      openai: () => undefined,
      gemini: geminiStub(geminiSeen, {
        file: join(sb.workspace, 'hello.txt'),
        content: 'written by the stub via Gemini CLI\n',
        envDump: join(sb.workspace, 'cell-env.txt'),
      }),
    };
    try {
      const r = await runCli(['gemini', '-p', 'create hello.txt', '-m', 'gemini-stub-1'], sb, {
        GEMINI_API_KEY: GEMINI_KEY,
      });
      assert.equal(r.status, 0, `gemini failed:\n${r.stdout}\n${r.stderr}`);
      const diff = JSON.parse((await runCli(['diff', '--json'], sb)).stdout) as { path: string; change: string }[];
      assert.ok(
        diff.some((c) => c.path === 'hello.txt' && c.change === 'added'),
        JSON.stringify(diff),
      );
      assert.equal(layerFile(sb, 'hello.txt'), 'written by the stub via Gemini CLI\n');
      const calls = geminiSeen.filter((s) => s.url.includes(':streamGenerateContent'));
      assert.ok(calls.length >= 3, `the stub saw ${geminiSeen.map((s) => s.url).join(', ')}`);
      for (const c of calls) assert.equal(c.headers['x-goog-api-key'], GEMINI_KEY);
      const cellEnv = layerFile(sb, 'cell-env.txt');
      assert.match(cellEnv, new RegExp(`^GEMINI_API_KEY=${proxySecretPlaceholder('GEMINI_API_KEY')}$`, 'm'));
      assert.ok(!JSON.stringify(layerFiles(sb)).includes(GEMINI_KEY), 'the key is in no file the cell wrote');
      const spy = await runCli(['spy'], sb);
      assert.equal(spy.status, 0, spy.stderr);
      assert.match(
        spy.stdout,
        /gemini .*POST generativelanguage\.googleapis\.com\/v1beta\/models\/gemini-stub-1:streamGenerateContent/,
      );
      assert.ok(!spy.stdout.includes(GEMINI_KEY));
    } finally {
      sb.cleanup();
    }
  });
});

/** Every file the cell's runs wrote (its layers and the agent's home), name → content. */
function layerFiles(sb: Sandbox): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile())
        try {
          out[path] = readFileSync(path, 'utf8');
        } catch {
          // unreadable placeholders
        }
    }
  };
  walk(join(cellDirOf(sb), 'layers'));
  walk(join(cellDirOf(sb), 'agent-home'));
  return out;
}
