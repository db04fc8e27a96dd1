import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { ac, acJson, agentcell, makeSandbox } from './helpers.js';

describe('login status and logout', () => {
  it('login status --json names each source of a credential and never its value', () => {
    const sb = makeSandbox({
      'agentcell.toml':
        '[secrets.OPENAI_API_KEY]\nfrom = "cmd:pass show openai --token sk-inline"\ninject = "proxy"\nhost = "api.openai.com"\nheader = "authorization"\n',
    });
    try {
      const key = 'sk-ant-test-VALUE-must-not-show';
      const r = agentcell(['login', 'status', '--json'], {
        cwd: sb.workspace,
        env: { ...sb.env, ANTHROPIC_API_KEY: key },
      });
      assert.equal(r.status, 0, r.stderr);
      assert.ok(!r.stdout.includes(key) && !r.stdout.includes('sk-inline'), 'a value leaked into login status');
      const rows = JSON.parse(r.stdout) as { agent: string; ready: boolean; sources: { kind: string }[] }[];
      const claude = rows.find((row) => row.agent === 'claude');
      assert.deepEqual(claude?.sources, [
        { kind: 'host-variable', variable: 'ANTHROPIC_API_KEY', injectedAs: 'x-api-key', host: 'api.anthropic.com' },
      ]);
      const codex = rows.find((row) => row.agent === 'codex');
      assert.deepEqual(codex?.sources, [
        { kind: 'policy-secret', secret: 'OPENAI_API_KEY', from: 'cmd:pass …', inject: 'proxy' },
      ]);
      assert.equal(rows.find((row) => row.agent === 'gemini')?.ready, false);
    } finally {
      sb.cleanup();
    }
  });

  it('logout deletes the stored login and the copies in cells, and --dry-run deletes nothing', () => {
    const sb = makeSandbox();
    try {
      const stored = join(sb.agentcellHome, 'config', 'credentials', 'claude', '.claude', '.credentials.json');
      const copy = join(sb.agentcellHome, 'state', 'cells', 'c1', 'agent-home', '.claude', '.credentials.json');
      for (const file of [stored, copy]) {
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, '{"token":"x"}');
      }
      const status = acJson<{ agent: string; sources: { kind: string; path?: string }[] }[]>(
        sb,
        'login',
        'status',
        '--json',
      );
      assert.deepEqual(
        status.find((s) => s.agent === 'claude')?.sources.map((s) => [s.kind, s.path]),
        [['stored-login', stored]],
      );
      const dry = acJson<{ removed: string[] }>(sb, 'logout', 'claude', '--dry-run', '--json');
      assert.deepEqual(dry.removed.sort(), [copy, stored].sort());
      assert.ok(existsSync(stored) && existsSync(copy), 'dry run deleted');
      assert.equal(ac(sb, 'logout', 'claude').status, 0);
      assert.equal(existsSync(stored) || existsSync(copy), false);
      assert.equal(ac(sb, 'logout', 'nosuch').status, 2);
    } finally {
      sb.cleanup();
    }
  });
});

describe('a login the agent refreshes in the cell', () => {
  it('is written back to the store after the run, and no copy stays in the cell', () => {
    const sb = makeSandbox({ 'agentcell.toml': '[agent]\nsource = "host"\n' });
    try {
      // A stand-in for the agent's CLI (the mechanism under test is agentcell's, not Claude's):
      // it reads the login it was given, then refreshes it, as an OAuth client does.
      const bin = join(sb.root, 'bin');
      mkdirSync(bin);
      writeFileSync(
        join(bin, 'claude'),
        '#!/bin/sh\ncat ~/.claude/.credentials.json > seen-login.txt\nprintf \'{"token":"refreshed"}\' > ~/.claude/.credentials.json\n',
        { mode: 0o755 },
      );
      const stored = join(sb.agentcellHome, 'config', 'credentials', 'claude', '.claude', '.credentials.json');
      mkdirSync(dirname(stored), { recursive: true });
      writeFileSync(stored, '{"token":"old"}');
      const r = agentcell(['claude', '-p', 'hi'], {
        cwd: sb.workspace,
        env: { ...sb.env, PATH: `${bin}:${sb.env['PATH'] ?? ''}` },
      });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(readFileSync(stored, 'utf8'), '{"token":"refreshed"}', 'the refresh went back to the store');
      const cells = join(sb.agentcellHome, 'state', 'cells');
      for (const cell of readdirSync(cells))
        assert.equal(
          existsSync(join(cells, cell, 'agent-home', '.claude', '.credentials.json')),
          false,
          'a copy stayed',
        );
      assert.equal(existsSync(join(sb.workspace, 'seen-login.txt')), false, 'the run wrote to the workspace');
      const diff = acJson<{ path: string }[]>(sb, 'diff', '--json');
      assert.deepEqual(
        diff.map((c) => c.path),
        ['seen-login.txt'],
      );
      assert.match(ac(sb, 'diff', '--patch').stdout, /^\+\{"token":"old"\}$/m, 'the cell got the stored login');
    } finally {
      sb.cleanup();
    }
  });
});
