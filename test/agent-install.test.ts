import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { agentcellPaths } from '../src/paths.js';
import { allAgentAdapters } from '../src/agents/agent-registry.js';
import { readyAgent } from '../src/agents/prepare-agent.js';
import { prepareRun } from '../src/run/prepare-run.js';
import { runPrepared } from '../src/run/run-cell.js';
import { withCommand } from '../src/run/replan.js';
import { acJson, CLI, snapshot, type Sandbox, agentSandbox, TOOLCHAIN_CACHE as CACHE } from './helpers.js';

/**
 * The real CLIs from npm, installed once per machine into a cache both test passes share
 * (scripts/test.sh sets AGENTCELL_TOOLCHAIN_CACHE; the unprivileged pass only reads it).
 */

/** The CLI with room for a first install (minutes on a slow registry). */
function acSlow(sb: Sandbox, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: sb.workspace,
    env: sb.env,
    encoding: 'utf8',
    input: '',
    timeout: 600_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('agent CLIs installed from npm run in a cell, offline', () => {
  for (const adapter of allAgentAdapters()) {
    it(`${adapter.name}: ${adapter.npmPackage}@${adapter.version} --version with network none`, () => {
      const sb = agentSandbox();
      try {
        const r = acSlow(sb, [adapter.name, '--network', 'none', '--', '--version']);
        assert.equal(r.status, 0, `agentcell ${adapter.name} --version failed:\n${r.stderr}`);
        // Some CLIs print their version on stderr; agentcell's own lines there don't count.
        const printed = [r.stdout, ...r.stderr.split('\n').filter((l) => !/^(agentcell:|  npm:)/.test(l))].join('\n');
        assert.ok(printed.includes(adapter.version), `${adapter.name} printed ${printed}`);
        assert.match(r.stderr, /network none/, 'the banner says the cell had no network');
        const toolchain = join(CACHE, adapter.name, adapter.version);
        assert.ok(existsSync(join(toolchain, '.agentcell-toolchain.json')), 'the install finished and was marked');
        assert.ok(
          !readdirSync(join(CACHE, adapter.name)).some((n) => n.includes('.partial-')),
          'no partial install left',
        );
        // The receipt records the CLI's version and the read-only toolchain mount.
        const receipt = acJson<{ tools: Record<string, string>; mounts: { target: string; mode: string }[] }>(
          sb,
          'receipt',
          'show',
          '--format',
          'json',
        );
        assert.equal(receipt.tools[adapter.name], adapter.version);
        assert.ok(
          receipt.mounts.some((m) => m.target === `/opt/agentcell/toolchains/${adapter.name}` && m.mode === 'ro'),
          JSON.stringify(receipt.mounts),
        );
      } finally {
        sb.cleanup();
      }
    });
  }

  it('a first run installs into an empty cache and the same run starts the CLI (its dir is bound, not staged as a file)', () => {
    // The plan is made before the install: the toolchain dir did not exist yet when the
    // backend chose which read-only sources to copy, and a copy of a directory fails (EISDIR).
    const sb = agentSandbox();
    sb.env['AGENTCELL_TOOLCHAIN_CACHE'] = join(sb.root, 'empty-cache');
    try {
      const r = acSlow(sb, ['claude', '--version']);
      assert.equal(r.status, 0, `the first run failed:\n${r.stderr}`);
      assert.match(r.stdout, /\(Claude Code\)/);
      assert.match(r.stderr, /installed @anthropic-ai\/claude-code@/);
    } finally {
      sb.cleanup();
    }
  });

  it('a dry run installs nothing and says it would', () => {
    const sb = agentSandbox();
    const cache = join(sb.root, 'empty-cache');
    sb.env['AGENTCELL_TOOLCHAIN_CACHE'] = cache;
    try {
      const plan = acJson<{ dryRun: boolean; agent: { toolchain: { installed: boolean; dir: string } } }>(
        sb,
        'codex',
        '--dry-run',
        '--json',
        '--',
        'exec',
        'hi',
      );
      assert.equal(plan.dryRun, true);
      assert.equal(plan.agent.toolchain.installed, false);
      assert.equal(plan.agent.toolchain.dir, join(cache, 'codex', '0.169.0'));
      assert.equal(existsSync(cache), false, 'nothing was installed');
      assert.equal(existsSync(join(sb.agentcellHome, 'state', 'cells')), false, 'no cell, no seeded home');
    } finally {
      sb.cleanup();
    }
  });

  it('the toolchain is read-only in the cell and the host home stays out of reach (attack + control)', async () => {
    const sb = agentSandbox();
    // A credential in the real home the agent would love to read.
    mkdirSync(join(sb.home, '.claude'), { recursive: true });
    writeFileSync(join(sb.home, '.claude', '.credentials.json'), '{"accessToken":"host-secret"}');
    try {
      const paths = agentcellPaths(sb.env);
      const planned = await prepareRun({
        agent: 'claude',
        network: 'none',
        argv: ['--version'],
        tty: false,
        paths,
        hostEnv: sb.env,
        cwd: sb.workspace,
      });
      await readyAgent(planned.agent!, () => undefined);
      const toolchainDir = planned.agent!.toolchain.dir;
      const before = snapshot(toolchainDir);
      const bin = '/opt/agentcell/toolchains/claude/node_modules/.bin/claude';
      // Same cell, same mounts; the command is a script that tries to tamper with the CLI.
      const prepared = withCommand(planned, [
        'sh',
        '-c',
        [
          // The home is the cell's own state dir, bound in: the host reads the results there.
          'exec > ~/result.txt 2>&1',
          `echo evil > ${bin} 2>/dev/null && echo WROTE-BIN`,
          'touch /opt/agentcell/toolchains/claude/planted 2>/dev/null && echo PLANTED',
          'cat ~/.claude/.credentials.json 2>/dev/null && echo READ-HOST-CRED',
          // positive controls: the CLI is there and runs, the seeded home is writable
          `${bin} --version`,
          'grep -q bypassPermissions ~/.claude/settings.json && echo SEEDED',
          'echo mine > ~/.claude/note && echo HOME-WRITABLE',
        ].join('; '),
      ]);
      const { outcome } = await runPrepared(prepared, paths);
      const text = readFileSync(join(prepared.agent!.home, 'result.txt'), 'utf8');
      assert.equal(outcome.exitCode, 0, text);
      assert.ok(!text.includes('WROTE-BIN') && !text.includes('PLANTED'), text);
      assert.ok(!text.includes('READ-HOST-CRED') && !text.includes('host-secret'), text);
      assert.match(text, /2\.1\.197 \(Claude Code\)/);
      assert.match(text, /SEEDED/);
      assert.match(text, /HOME-WRITABLE/);
      assert.deepEqual(snapshot(toolchainDir), before, 'the shared toolchain is unchanged');
      assert.ok(existsSync(join(prepared.agent!.home, '.claude', 'note')), 'the home persists in the cell state');
    } finally {
      sb.cleanup();
    }
  });
});
