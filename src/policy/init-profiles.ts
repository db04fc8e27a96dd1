import { lstatSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AgentcellError } from '../errors.js';
import { createFileAtomic, writeFileAtomic } from '../_internal/atomic-file.js';
import { PROJECT_POLICY_FILE } from './resolve-policy.js';
import { policySchemaUrl } from './policy-json-schema.js';

/** The starting points `agentcell init --profile NAME` offers. */
export const PROFILES = ['strict', 'development', 'node', 'python'] as const;
export type ProfileName = (typeof PROFILES)[number];
export const DEFAULT_PROFILE: ProfileName = 'development';

/** One line per profile, for `agentcell init --help` and error messages. */
export const PROFILE_SUMMARIES: Record<ProfileName, string> = {
  strict: 'strict mode, read-only workspace, no network: the agent can read and run, not change',
  development: 'development mode, read-write workspace, no network (the default)',
  node: 'development, plus npm-registry notes and Node-specific secret patterns',
  python: 'development, plus PyPI notes and Python-specific secret patterns and scan skips',
};

export function isProfileName(name: string): name is ProfileName {
  return (PROFILES as readonly string[]).includes(name);
}

export interface InitOptions {
  profile?: string;
  /** Replace an existing agentcell.toml. */
  force?: boolean;
  /** Check and render, write nothing. */
  dryRun?: boolean;
  /** The JSON Schema editors validate the file with (default: the one this install ships). */
  schemaUrl?: string;
}

export interface InitResult {
  path: string;
  profile: ProfileName;
  content: string;
  written: boolean;
}

interface ProfileShape {
  mode: 'strict' | 'development';
  workspaceMode: 'readonly' | 'overlay';
  hide: string[];
  hideNotes: string[];
  scanSkip: string[];
  mountExample: { source: string; note: string };
  network: string[];
  env: Record<string, string>;
  envExample: string;
}

const SHAPES: Record<ProfileName, ProfileShape> = {
  strict: {
    mode: 'strict',
    workspaceMode: 'readonly',
    hide: [],
    hideNotes: [],
    scanSkip: ['.git', 'node_modules'],
    mountExample: { source: '~/reference-docs', note: 'strict refuses mode = "rw"' },
    network: [],
    env: {},
    envExample: 'LANG = "C.UTF-8"',
  },
  development: {
    mode: 'development',
    workspaceMode: 'overlay',
    hide: [],
    hideNotes: [],
    scanSkip: ['.git', 'node_modules'],
    mountExample: { source: '~/.cache/pip', note: 'mode = "rw" would let the cell write to the host, labeled' },
    network: [],
    env: {},
    envExample: 'NODE_ENV = "development"',
  },
  node: {
    mode: 'development',
    workspaceMode: 'overlay',
    hide: ['service-account*.json', 'firebase-adminsdk*.json'],
    hideNotes: ['".yarnrc.yml" can hold npmAuthToken; hiding it also hides yarnPath, so it is not hidden by default'],
    scanSkip: ['.git', 'node_modules'],
    mountExample: { source: '~/.npm/_cacache', note: 'a read-only npm cache speeds up `npm ci --offline`' },
    network: [
      '# npm install / npm ci need the registry: set mode = "allowlist" above and uncomment',
      '# this line (or install dependencies before the run).',
      '# allow = ["registry.npmjs.org"]',
    ],
    env: { NPM_CONFIG_UPDATE_NOTIFIER: 'false', NPM_CONFIG_FUND: 'false' },
    envExample: 'NODE_ENV = "development"',
  },
  python: {
    mode: 'development',
    workspaceMode: 'overlay',
    hide: ['pip.conf', 'service-account*.json'],
    hideNotes: ['pip.conf can hold an index-url with credentials'],
    scanSkip: ['.git', 'node_modules', '.venv', 'venv', '.tox', '__pycache__'],
    mountExample: { source: '~/.cache/pip', note: 'a read-only pip cache speeds up installs' },
    network: [
      '# pip install needs the package index: set mode = "allowlist" above and uncomment',
      '# this line (or install dependencies before the run).',
      '# allow = ["pypi.org", "files.pythonhosted.org"]',
    ],
    env: { PIP_DISABLE_PIP_VERSION_CHECK: '1', PYTHONDONTWRITEBYTECODE: '1' },
    envExample: 'PYTHONUNBUFFERED = "1"',
  },
};

/** The commented `agentcell.toml` for a profile; every one validates against the schema. */
export function renderProfile(name: string, schemaUrl?: string): string {
  const profile = checkProfile(name);
  const shape = SHAPES[profile];
  const strict = shape.mode === 'strict';
  const lines: string[] = [
    // taplo's directive: editors using it (VS Code's Even Better TOML, …) validate and complete keys.
    ...(schemaUrl !== undefined ? [`#:schema ${schemaUrl}`] : []),
    `# agentcell.toml: the policy for cells that run in this workspace.`,
    `# Written by \`agentcell init --profile ${profile}\`:`,
    `#   ${PROFILE_SUMMARIES[profile]}.`,
    '# It is merged over your user policy and the built-in defaults; command-line flags',
    '# override it. Unknown keys are errors, so a typo never silently weakens a policy.',
    '# See each effective value and where it came from: agentcell policy explain',
    '# The cell sees this file read-only: an agent cannot loosen its own policy.',
    '',
    '# [cell]: how the cell is built.',
    '[cell]',
    '# Where the cell runs: "bwrap" (Linux namespaces), "podman", "docker" or "gvisor".',
    'backend = "bwrap"',
    '# "strict" refuses every lower-assurance choice; "development" allows them and labels',
    '# them in the banner and the receipt; "build" and "breakglass" also open the network.',
    `mode = "${shape.mode}"`,
    '# The root filesystem: "host" (host /usr and /etc read-only, an empty home) or a',
    '# directory made by `agentcell image build`.',
    'rootfs = "host"',
    '# "user" runs the agent as a non-root uid; "root" makes it root inside the cell only.',
    'user = "user"',
    '',
    '# [workspace]: how the cell sees this repository.',
    '[workspace]',
    '# "overlay": changes stay in the cell until `agentcell accept` (or `restore` drops',
    '# them); "readonly": the agent reads and runs but cannot change files; "direct":',
    `# read-write, changes land in the repository live (receipted, ${strict ? 'strict refuses it' : 'labeled'}).`,
    `mode = "${shape.workspaceMode}"`,
    '# Secret-looking files are masked in the cell: .env, .env.*, *.pem, *.key, id_*, .ssh,',
    '# .aws, .npmrc, .pypirc, .netrc and more. Add your own patterns:',
    ...shape.hideNotes.map((note) => `# (${note})`),
    `hide = ${tomlArray(shape.hide)}`,
    '# Patterns that un-mask what hide would mask (the cell can then read them):',
    'expose = []',
    '# Directories the secret scan does not descend into:',
    `scan_skip = ${tomlArray(shape.scanSkip)}`,
    '',
    '# [[mount]]: extra host paths in the cell, read-only unless mode = "rw". Nothing of',
    '# your home directory is visible unless it is listed here. Repeat the block per path.',
    `# For example (${shape.mountExample.note}):`,
    '# [[mount]]',
    `# source = "${shape.mountExample.source}"`,
    '# target = "/somewhere/else"   # default: the same path as source',
    '# mode = "ro"                  # "ro" or "rw"',
    '',
    '# [network]: the cell has no network interface but loopback; traffic leaves only',
    '# through the agentcell egress gateway, which denies by default.',
    '[network]',
    strict
      ? '# "none": no network at all; "allowlist": only the hosts in allow, through the\n# egress gateway; strict refuses "open".'
      : '# "none": no network at all; "allowlist": only the hosts in allow, through the\n# egress gateway; "open": unfiltered (labeled).',
    'mode = "none"',
    ...(shape.network.length > 0
      ? []
      : ['# allow = ["api.anthropic.com", "github.com:443"]  # host patterns with an optional :PORT']),
    '# deny = ["*.internal.example.com"]                # always wins over allow',
    '# inspect = ["api.anthropic.com"]                  # TLS-intercepted so requests are logged',
    '# resolve = { "git.internal" = "10.0.0.5" }        # like curl --resolve',
    '# upstream_ca = ["/etc/ssl/certs/corp-ca.pem"]     # extra CAs the gateway trusts upstream',
    ...shape.network,
    '',
    '# [secrets.NAME]: credentials for the agent, from "env:VAR", "file:PATH" or "cmd:COMMAND".',
    '# inject = "proxy" (the default; needs network mode = "allowlist") has the egress gateway',
    '# add a header, so the cell never sees the value; "env" puts it in the cell\'s environment',
    `# ${strict ? '(strict refuses it)' : '(labeled lower assurance)'}.`,
    '# [secrets.ANTHROPIC_API_KEY]',
    '# from = "env:ANTHROPIC_API_KEY"',
    '# inject = "proxy"',
    '# host = "api.anthropic.com"',
    '# header = "x-api-key"',
    ...(strict ? [] : ['# [secrets.GH_TOKEN]', '# from = "cmd:gh auth token"', '# inject = "env"']),
    '',
    '# [resources]: limits per run. timeout and disk are always enforced; pids and memory need a',
    '# writable cgroup (see `agentcell doctor`).',
    '[resources]',
    '# timeout = "2h"   # "90s", "30m", "2h" or a number of seconds',
    '# pids = 512',
    '# memory = "4G"',
    '# cpus = 2',
    '# disk = "8GiB"   # what a run may write (workspace layer, /tmp, $HOME); the default',
    '',
    '# [agent]: defaults for the agent adapters (agentcell claude, codex, gemini, ...).',
    '# [agent]',
    '# name = "claude"',
    '# args = []',
    '',
    "# [env]: variables set in the cell. The cell's environment is built, not inherited:",
    "# nothing else from your shell's environment (where tokens live) reaches it.",
    '[env]',
    ...Object.entries(shape.env).map(([key, value]) => `${key} = ${JSON.stringify(value)}`),
    `# ${shape.envExample}`,
    '',
  ];
  return lines.join('\n');
}

/**
 * Writes `agentcell.toml` into a workspace atomically (atomic-file.ts: temp file, then link or rename).
 * Refuses to replace an existing file unless `force`; `dryRun` checks and renders only.
 */
export function writeInitFile(workspace: string, options: InitOptions = {}): InitResult {
  const profile = checkProfile(options.profile ?? DEFAULT_PROFILE);
  const content = renderProfile(profile, options.schemaUrl ?? policySchemaUrl());
  const dir = resolve(workspace);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new AgentcellError('WORKSPACE_INVALID', `workspace ${dir} does not exist`);
  }
  if (!isDir) throw new AgentcellError('WORKSPACE_INVALID', `workspace ${dir} is not a directory`);
  const path = join(dir, PROJECT_POLICY_FILE);
  if (!options.force && exists(path)) throw fileExists(path);
  if (options.dryRun) return { path, profile, content, written: false };

  if (options.force) writeFileAtomic(path, content, 0o644);
  else publishNew(path, content);
  return { path, profile, content, written: true };
}

/** Without force, a link makes "create only if absent" atomic; where links are unsupported, a checked replace. */
function publishNew(path: string, content: string): void {
  try {
    if (!createFileAtomic(path, content, 0o644)) throw fileExists(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw error;
    if (exists(path)) throw fileExists(path);
    writeFileAtomic(path, content, 0o644);
  }
}

function checkProfile(name: string): ProfileName {
  if (isProfileName(name)) return name;
  const list = PROFILES.map((p) => `  ${p.padEnd(12)} ${PROFILE_SUMMARIES[p]}`).join('\n');
  throw new AgentcellError('USAGE', `unknown profile "${name}"; choose one of:\n${list}`);
}

function fileExists(path: string): AgentcellError {
  return new AgentcellError('FILE_EXISTS', `${path} already exists; use --force to replace it`);
}

function exists(path: string): boolean {
  try {
    lstatSync(path); // a dangling symlink counts: never write through one
    return true;
  } catch {
    return false;
  }
}

function tomlArray(values: readonly string[]): string {
  return `[${values.map((v) => JSON.stringify(v)).join(', ')}]`;
}
