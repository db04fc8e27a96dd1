import { isIP } from 'node:net';
import { z } from 'zod';
import { hostPatternProblem } from './host-pattern.js';
import { parseDuration, parseSize } from './units.js';

export const MODES = ['strict', 'development', 'build', 'breakglass'] as const;
export const BACKENDS = ['bwrap', 'podman', 'docker', 'gvisor'] as const;
export const WORKSPACE_MODES = ['overlay', 'direct', 'readonly'] as const;
export const NETWORK_MODES = ['none', 'allowlist', 'open'] as const;

export type Mode = (typeof MODES)[number];
export type BackendName = (typeof BACKENDS)[number];
export type WorkspaceMode = (typeof WORKSPACE_MODES)[number];
export type NetworkMode = (typeof NETWORK_MODES)[number];

const hostPattern = z.string().superRefine((value, ctx) => {
  const problem = hostPatternProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name');
const size = z
  .union([z.string(), z.number()])
  .refine((v) => parseSize(v) !== undefined, 'expected a size such as "512M" or "2G"');
const duration = z
  .union([z.string(), z.number()])
  .refine((v) => parseDuration(v) !== undefined, 'expected a duration such as "90s", "30m" or a number of seconds');

const secret = z
  .strictObject({
    from: z.string().regex(/^(env|file|cmd):.+/, 'expected "env:VAR", "file:PATH" or "cmd:COMMAND"'),
    inject: z.enum(['env', 'file', 'proxy']).default('proxy'),
    /** For `env`: the variable the cell sees (default: the secret's name). */
    env: envName.optional(),
    /** For `file`: where the cell sees it (default: ~/.agentcell/secrets/NAME). */
    path: z.string().optional(),
    /** For `proxy`: which host gets the header, which header, and its shape. */
    host: hostPattern.optional(),
    header: z.string().optional(),
    template: z.string().default('{value}'),
  })
  .superRefine((s, ctx) => {
    if (s.inject === 'proxy' && (!s.host || !s.header))
      ctx.addIssue({ code: 'custom', message: 'inject = "proxy" needs both host and header' });
    if (!s.template.includes('{value}'))
      ctx.addIssue({ code: 'custom', path: ['template'], message: 'expected a template containing {value}' });
  });

const mount = z.strictObject({
  source: z.string().min(1),
  target: z.string().optional(),
  mode: z.enum(['ro', 'rw']).default('ro'),
});

/**
 * The one source of truth for `agentcell.toml`. Unknown keys are errors (a typo must
 * never silently weaken a policy); defaults here are the built-in layer.
 */
export const PolicySchema = z.strictObject({
  cell: z
    .strictObject({
      backend: z.enum(BACKENDS).default('bwrap'),
      mode: z.enum(MODES).default('development'),
      /** "host" (host /usr, /etc read-only) or a directory rootfs. */
      rootfs: z.string().default('host'),
      /** Run as a non-root uid ("user") or as root inside the cell ("root"). */
      user: z.enum(['user', 'root']).default('user'),
    })
    .prefault({}),
  workspace: z
    .strictObject({
      mode: z.enum(WORKSPACE_MODES).default('direct'),
      /** Extra secret-file patterns, added to the built-in list. */
      hide: z.array(z.string().min(1)).default([]),
      /** Patterns that un-hide what hide would mask. */
      expose: z.array(z.string().min(1)).default([]),
      /** Directories the secret scan does not descend into. */
      scan_skip: z.array(z.string().min(1)).default(['.git', 'node_modules']),
    })
    .prefault({}),
  mount: z.array(mount).default([]),
  network: z
    .strictObject({
      mode: z.enum(NETWORK_MODES).optional(),
      allow: z.array(hostPattern).default([]),
      deny: z.array(hostPattern).default([]),
      inspect: z.array(hostPattern).default([]),
      resolve: z
        .record(z.string(), z.string().refine((ip) => isIP(ip) !== 0, 'expected an IP address'))
        .default({}),
      upstream_ca: z.array(z.string()).default([]),
    })
    .prefault({}),
  secrets: z.record(envName, secret).default({}),
  resources: z
    .strictObject({
      memory: size.optional(),
      pids: z.number().int().positive().optional(),
      cpus: z.number().positive().optional(),
      timeout: duration.optional(),
    })
    .prefault({}),
  env: z.record(envName, z.string()).default({}),
  agent: z
    .strictObject({
      name: z.string().optional(),
      args: z.array(z.string()).default([]),
    })
    .prefault({}),
});

export type Policy = z.output<typeof PolicySchema>;
export type PolicyInput = z.input<typeof PolicySchema>;
