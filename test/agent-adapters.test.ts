import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  CLI,
  ac,
  acJson,
  cellDirOf,
  snapshot,
  type CliResult,
  type Sandbox,
  agentSandbox,
  TOOLCHAIN_CACHE as CACHE,
} from './helpers.js';

/** The CLI with room for a first install and with stdin. */
function acSlow(sb: Sandbox, args: string[], input = '', env: NodeJS.ProcessEnv = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: sb.workspace,
    env: { ...sb.env, ...env },
    encoding: 'utf8',
    input,
    timeout: 600_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Explained {
  key: string;
  value: unknown;
  from: string[];
}

describe('agent adapters: policy layer, flags, seeded home, login', () => {
  it('policy explain names what the adapter added; the project and flags still win', () => {
    const sb = agentSandbox({
      'agentcell.toml': '[network]\nallow = ["registry.npmjs.org"]\n[env]\nDISABLE_TELEMETRY = "0"\n',
    });
    try {
      const rows = acJson<Explained[]>(sb, 'policy', 'explain', '--agent', 'claude', '--json');
      const row = (key: string): Explained => {
        const found = rows.find((r) => r.key === key);
        assert.ok(found, `no ${key} in ${JSON.stringify(rows.map((r) => r.key))}`);
        return found;
      };
      assert.equal(row('network.mode').value, 'allowlist');
      assert.deepEqual(row('network.mode').from, ['agent claude']);
      assert.deepEqual(row('network.inspect').value, ['api.anthropic.com']);
      assert.deepEqual(row('network.inspect').from, ['agent claude']);
      const project = join(sb.workspace, 'agentcell.toml');
      assert.deepEqual(row('network.allow').from, ['agent claude', project], 'host lists accumulate');
      assert.ok((row('network.allow').value as string[]).includes('registry.npmjs.org'));
      assert.ok((row('network.allow').value as string[]).includes('api.anthropic.com'));
      // The project's value beats the adapter's default.
      assert.equal(row('env.DISABLE_TELEMETRY').value, '0');
      assert.deepEqual(row('env.DISABLE_TELEMETRY').from, [project]);
      assert.equal(row('env.DISABLE_AUTOUPDATER').value, '1');
      assert.ok(!rows.some((r) => r.key.startsWith('secrets.')), 'no key on the host, no secret');

      // With a key on the host the adapter declares it for proxy injection.
      const withKey = agentcellJson(sb, ['policy', 'explain', 'secrets', '--agent', 'claude', '--json'], {
        ANTHROPIC_API_KEY: 'sk-host-only',
      });
      const secret = Object.fromEntries(withKey.map((r) => [r.key, r.value]));
      assert.equal(secret['secrets.ANTHROPIC_API_KEY.from'], 'env:ANTHROPIC_API_KEY');
      assert.equal(secret['secrets.ANTHROPIC_API_KEY.inject'], 'proxy');
      assert.equal(secret['secrets.ANTHROPIC_API_KEY.header'], 'x-api-key');
      assert.ok(!JSON.stringify(withKey).includes('sk-host-only'), 'explain never prints the value');

      // --network none: no gateway, so the adapter adds no credential (and the run is not refused for it).
      const offline = agentcellJson(sb, ['policy', 'explain', '--agent', 'claude', '--network', 'none', '--json'], {
        ANTHROPIC_API_KEY: 'sk-host-only',
      });
      assert.deepEqual(
        offline.filter((r) => r.key.startsWith('secrets.')),
        [],
      );
      // A flag beats the adapter: --network none.
      const none = acJson<Explained[]>(
        sb,
        'policy',
        'explain',
        'network.mode',
        '--agent',
        'claude',
        '--network',
        'none',
        '--json',
      );
      assert.deepEqual(none[0], { key: 'network.mode', value: 'none', from: ['command line'] });
    } finally {
      sb.cleanup();
    }
  });

  it('the shortcut, --agent-arg and the unattended flags make one argv; unknown agents are refused', () => {
    const sb = agentSandbox();
    try {
      const plan = acJson<{ plan: { argv: string[] } }>(
        sb,
        'claude',
        '--dry-run',
        '--json',
        '--agent-arg',
        '--model',
        '--agent-arg',
        'claude-x',
        '-p',
        'fix the test',
      );
      const argv = plan.plan.argv;
      const start = argv.indexOf('/opt/agentcell/toolchains/claude/node_modules/.bin/claude');
      assert.ok(start > 0, argv.join(' '));
      assert.deepEqual(argv.slice(start), [
        '/opt/agentcell/toolchains/claude/node_modules/.bin/claude',
        '--dangerously-skip-permissions',
        '--model',
        'claude-x',
        '-p',
        'fix the test',
      ]);
      const same = acJson<{ plan: { argv: string[] } }>(
        sb,
        'run',
        '--agent',
        'claude',
        '--dry-run',
        '--json',
        '--',
        '-p',
        'x',
      );
      assert.ok(same.plan.argv.includes('--dangerously-skip-permissions'));
      const bad = ac(sb, 'run', '--agent', 'claudia', '--', '-p', 'x');
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /unknown agent "claudia"; expected one of claude, codex, gemini, copilot, pi, opencode/);
      const badFile = agentSandbox({ 'agentcell.toml': '[agent]\nname = "gpt"\n' });
      try {
        const r = ac(badFile, 'run', '--', 'x');
        assert.equal(r.status, 2);
        assert.match(r.stderr, /agent\.name.*unknown agent "gpt"/);
      } finally {
        badFile.cleanup();
      }
    } finally {
      sb.cleanup();
    }
  });

  it('seeds each agent’s native config in the cell’s home, keeping what the agent wrote', () => {
    const sb = agentSandbox();
    try {
      const first = acSlow(sb, ['claude', '--network', 'none', '--', '--version']);
      assert.equal(first.status, 0, first.stderr);
      const home = join(cellDirOf(sb), 'agent-home');
      const settings = JSON.parse(readFileSync(join(home, '.claude', 'settings.json'), 'utf8')) as {
        permissions: { defaultMode: string };
      };
      assert.equal(settings.permissions.defaultMode, 'bypassPermissions');
      const state = JSON.parse(readFileSync(join(home, '.claude.json'), 'utf8')) as Record<string, unknown>;
      assert.equal(state['hasCompletedOnboarding'], true);
      const projects = state['projects'] as Record<string, { hasTrustDialogAccepted: boolean }>;
      assert.equal(projects[sb.workspace]?.hasTrustDialogAccepted, true, 'the workspace is trusted');
      assert.equal(statSync(home).mode & 0o777, 0o700);
      // What the agent keeps there survives the next run's seeding.
      writeFileSync(join(home, '.claude.json'), JSON.stringify({ ...state, numStartups: 41, autoUpdates: true }));
      assert.equal(acSlow(sb, ['claude', '--network', 'none', '--', '--version']).status, 0);
      const again = JSON.parse(readFileSync(join(home, '.claude.json'), 'utf8')) as Record<string, unknown>;
      assert.equal(again['numStartups'], 41);
      assert.equal(again['autoUpdates'], false, 'agentcell’s keys win');

      assert.equal(acSlow(sb, ['codex', '--network', 'none', '--', '--version']).status, 0);
      const codex = readFileSync(join(home, '.codex', 'config.toml'), 'utf8');
      assert.match(codex, /^approval_policy = "never"$/m);
      assert.match(codex, /^sandbox_mode = "danger-full-access"$/m);
      assert.ok(codex.includes(`[projects.${JSON.stringify(sb.workspace)}]\ntrust_level = "trusted"`));
      assert.equal(acSlow(sb, ['gemini', '--network', 'none', '--', '--version']).status, 0);
      const gemini = JSON.parse(readFileSync(join(home, '.gemini', 'settings.json'), 'utf8')) as {
        privacy: { usageStatisticsEnabled: boolean };
      };
      assert.equal(gemini.privacy.usageStatisticsEnabled, false);
      // Instruction files are the repo's: nothing is written in the workspace.
      assert.deepEqual(readdirSync(sb.workspace), []);
    } finally {
      sb.cleanup();
    }
  });

  it('a symlink the agent planted in its home is never read or written through by the next run’s seeding', () => {
    const sb = agentSandbox();
    try {
      assert.equal(acSlow(sb, ['claude', '--network', 'none', '--', '--version']).status, 0);
      const home = join(cellDirOf(sb), 'agent-home');
      // Host files the cell can't reach, and what the agent leaves in its (rw) home to reach them.
      const hostSecret = join(sb.root, 'host-config.json');
      writeFileSync(hostSecret, JSON.stringify({ auths: { registry: 'token-host-only-5150' } }));
      const hostDir = join(sb.root, 'host-dir');
      mkdirSync(hostDir);
      rmSync(join(home, '.claude.json'));
      symlinkSync(hostSecret, join(home, '.claude.json'));
      // Positive control: read through the link (what the seeding did), the host's token comes out.
      assert.match(readFileSync(join(home, '.claude.json'), 'utf8'), /token-host-only-5150/);

      assert.equal(acSlow(sb, ['claude', '--network', 'none', '--', '--version']).status, 0);
      assert.ok(lstatSync(join(home, '.claude.json')).isFile(), 'the link is replaced, not followed');
      assert.doesNotMatch(readFileSync(join(home, '.claude.json'), 'utf8'), /token-host-only/);
      assert.equal(readFileSync(hostSecret, 'utf8'), JSON.stringify({ auths: { registry: 'token-host-only-5150' } }));

      // A directory on the way swapped for a link: refused, nothing written through it.
      rmSync(join(home, '.claude'), { recursive: true });
      symlinkSync(hostDir, join(home, '.claude'));
      const refused = acSlow(sb, ['claude', '--network', 'none', '--', '--version']);
      assert.equal(refused.status, 3, refused.stderr);
      assert.match(refused.stderr, /agent-home\/\.claude\/settings\.json: a directory on the way .* is a symlink/);
      assert.deepEqual(readdirSync(hostDir), []);
    } finally {
      sb.cleanup();
    }
  });

  it('Claude Code runs unattended as root in the cell (IS_SANDBOX); without it, it refuses', () => {
    const sb = agentSandbox();
    try {
      const base = ['claude', '--root', '--mode', 'development', '--network', 'none'];
      const refused = acSlow(sb, [...base, '--env', 'IS_SANDBOX=0', '--', '-p', 'hi']);
      assert.match(refused.stdout + refused.stderr, /cannot be used with root\/sudo privileges/, 'control');
      const ran = acSlow(sb, [...base, '--', '-p', 'hi']);
      assert.doesNotMatch(ran.stdout + ran.stderr, /root\/sudo/);
      // It got past the check to authentication (no key on this host, no network).
      // The agent's own words, not agentcell's no-credentials hint (which names `agentcell login`).
      const own = (ran.stdout + ran.stderr)
        .split('\n')
        .filter((line) => !line.startsWith('agentcell: '))
        .join('\n');
      assert.match(own, /Not logged in|API key|login/i);
    } finally {
      sb.cleanup();
    }
  });

  it('agent.source = "host" binds the host’s own CLI read-only (its whole node_modules) and runs it', () => {
    const sb = agentSandbox({ 'agentcell.toml': '[agent]\nsource = "host"\n' });
    const npmCell = agentSandbox();
    try {
      // An npm prefix on the host's PATH, as a global install would be (an npm-source run installs it first).
      assert.equal(acSlow(npmCell, ['codex', '--network', 'none', '--', '--version']).status, 0);
      const bin = join(CACHE, 'codex', '0.169.0', 'node_modules', '.bin');
      const env = { PATH: `${bin}:${process.env['PATH'] ?? '/usr/bin:/bin'}` };
      const r = acSlow(sb, ['codex', '--network', 'none', '--', '--version'], '', env);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /codex-cli 0\.169\.0/);
      const receipt = acJson<{
        tools: Record<string, string>;
        mounts: { source: string; target: string; mode: string }[];
      }>(sb, 'receipt', 'show', '--format', 'json');
      assert.ok(receipt.tools['codex']?.startsWith('host '), JSON.stringify(receipt.tools));
      assert.ok(
        receipt.mounts.some(
          (m) =>
            m.source === join(CACHE, 'codex', '0.169.0', 'node_modules') &&
            m.target === '/opt/agentcell/toolchains/codex-host/node_modules' &&
            m.mode === 'ro',
        ),
        JSON.stringify(receipt.mounts),
      );
      const missing = ac(sb, 'codex', '--network', 'none', '--', '--version');
      assert.equal(missing.status, 3);
      assert.match(missing.stderr, /agent\.source = "host": codex is not on PATH/);
    } finally {
      npmCell.cleanup();
      sb.cleanup();
    }
  });

  it('login keeps the credential in agentcell’s store, never in the workspace, and later runs get it', () => {
    const sb = agentSandbox({ 'README.md': 'repo\n' });
    const key = 'sk-login-e2e-77aa88bb99cc';
    try {
      const before = snapshot(sb.workspace);
      const plan = acJson<{ plan: { argv: string[] }; store: string; files: string[] }>(
        sb,
        'login',
        'claude',
        '--dry-run',
        '--json',
      );
      assert.ok(
        plan.plan.argv.join(' ').endsWith('/opt/agentcell/toolchains/claude/node_modules/.bin/claude auth login'),
      );
      assert.deepEqual(plan.files, ['.claude/.credentials.json']);
      assert.equal(existsSync(plan.store), false, 'a dry run stores nothing');

      // Codex's own API-key login runs offline: a real login flow, through agentcell login.
      const login = acSlow(sb, ['login', 'codex', '--', 'login', '--with-api-key'], `${key}\n`);
      assert.equal(login.status, 0, login.stderr);
      const stored = join(sb.agentcellHome, 'config', 'credentials', 'codex', '.codex', 'auth.json');
      assert.ok(readFileSync(stored, 'utf8').includes(key));
      assert.equal(statSync(stored).mode & 0o777, 0o600);
      assert.equal(statSync(join(sb.agentcellHome, 'config', 'credentials', 'codex')).mode & 0o777, 0o700);
      assert.deepEqual(snapshot(sb.workspace), before, 'the workspace is untouched');
      assert.ok(
        !readdirSync(join(sb.agentcellHome, 'state', 'cells')).some((c) => c.includes('-login-')),
        'the login cell is gone with its copy',
      );

      const status = acSlow(sb, ['codex', '--network', 'none', '--', 'login', 'status']);
      assert.equal(status.status, 0, status.stderr);
      assert.match(status.stdout + status.stderr, /API key configured/);
      const receipt = acJson<{ assurance: { reasons: string[] } }>(sb, 'receipt', 'show', '--format', 'json');
      assert.ok(
        receipt.assurance.reasons.some((r) => r.startsWith('agentcell login codex')),
        'the lowering is labeled',
      );

      const pi = ac(sb, 'login', 'pi');
      assert.equal(pi.status, 2);
      assert.match(pi.stderr, /pi has no login of its own; set its API key on the host/);
    } finally {
      sb.cleanup();
    }
  });
});

function agentcellJson(sb: Sandbox, args: string[], env: NodeJS.ProcessEnv): Explained[] {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: sb.workspace,
    env: { ...sb.env, ...env },
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Explained[];
}
