import { ipFamily } from '../_internal/ip-family.js';
// zod/mini: the same schemas as zod, tree-shakable; the full build adds ~50 ms to every start.
import * as z from 'zod/mini';
import { hostPatternProblem } from './host-pattern.js';
import { isReservedName, reservedNameProblem } from './reserved-names.js';
import { parseDuration, parseSize } from './units.js';
import { BACKENDS, MODES, NETWORK_MODES, WORKSPACE_MODES } from '../_internal/vocabulary.js';

export type { BackendName, Mode, NetworkMode, WorkspaceMode } from '../_internal/vocabulary.js';

const hostPattern = z.string().check(
  z.superRefine((value, ctx) => {
    const problem = hostPatternProblem(value);
    if (problem) ctx.issues.push({ code: 'custom', message: problem, input: value });
  }),
);

/** The default `[resources] disk`: room for builds and dependency trees, not for filling a disk. */
export const DEFAULT_DISK_LIMIT = '8GiB';

/** A name that becomes an object key (`[env]`, `[secrets]`, `[network.resolve]`, a secret's `env`): never a reserved one. */
const notReserved = z.superRefine((value: string, ctx) => {
  if (isReservedName(value)) ctx.issues.push({ code: 'custom', message: reservedNameProblem(value), input: value });
});
/** Both marked for the JSON Schema, which states the same refusal (policy-json-schema.ts). */
export const envName = z
  .string()
  .check(z.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name'), notReserved);
export const resolveName = z.string().check(notReserved);
const size = z
  .union([z.string(), z.number()])
  .check(z.refine((v) => parseSize(v) !== undefined, 'expected a size such as "512M" or "2G"'));
const duration = z
  .union([z.string(), z.number()])
  .check(
    z.refine((v) => parseDuration(v) !== undefined, 'expected a duration such as "90s", "30m" or a number of seconds'),
  );
const stringList = z._default(z.array(z.string().check(z.minLength(1))), []);
const hostList = z._default(z.array(hostPattern), []);

const secret = z
  .strictObject({
    from: z.string().check(z.regex(/^(env|file|cmd):.+/, 'expected "env:VAR", "file:PATH" or "cmd:COMMAND"')),
    inject: z._default(z.enum(['env', 'file', 'proxy']), 'proxy'),
    /** For `env`: the variable the cell sees (default: the secret's name). */
    env: z.optional(envName),
    /** For `file`: where the cell sees it. */
    path: z.optional(z.string()),
    /** For `proxy`: which host gets the header, which header, and its shape. */
    host: z.optional(hostPattern),
    header: z.optional(z.string()),
    template: z._default(z.string(), '{value}'),
  })
  .check(
    z.superRefine((s, ctx) => {
      if (s.inject === 'proxy' && (!s.host || !s.header))
        ctx.issues.push({ code: 'custom', message: 'inject = "proxy" needs both host and header', input: s });
      if (s.header !== undefined && !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(s.header))
        ctx.issues.push({
          code: 'custom',
          path: ['header'],
          message: 'expected an HTTP header name such as "Authorization" or "x-api-key"',
          input: s.header,
        });
      if (!s.template.includes('{value}'))
        ctx.issues.push({
          code: 'custom',
          path: ['template'],
          message: 'expected a template containing {value}',
          input: s.template,
        });
    }),
  );

/** `[[network.rule]]`: the methods and paths an inspected host may be sent. */
const requestRule = z.strictObject({
  host: hostPattern,
  methods: z.optional(
    z.array(z.string().check(z.regex(/^[A-Z]+$/, 'expected an upper-case HTTP method such as "GET" or "POST"'))),
  ),
  paths: z.optional(
    z.array(
      z
        .string()
        .check(z.regex(/^\/[^\s?#]*$/, 'expected a path starting with "/", without query; "*" matches any characters')),
    ),
  ),
});

const mount = z.strictObject({
  source: z.string().check(z.minLength(1)),
  target: z.optional(z.string()),
  mode: z._default(z.enum(['ro', 'rw']), 'ro'),
});

/**
 * The one source of truth for `agentcell.toml`. Unknown keys are errors (a typo must
 * never silently weaken a policy); defaults here are the built-in layer.
 */
export const PolicySchema = z.strictObject({
  cell: z.prefault(
    z.strictObject({
      backend: z._default(z.enum(BACKENDS), 'bwrap'),
      mode: z._default(z.enum(MODES), 'strict'),
      /** "host" (host /usr, /etc read-only) or a directory rootfs. */
      rootfs: z._default(z.string(), 'host'),
      /** The OCI image for podman, docker and gvisor cells (default: what `agentcell image build` tags). */
      image: z.optional(z.string().check(z.minLength(1))),
      /** Run as a non-root uid ("user") or as root inside the cell ("root"). */
      user: z._default(z.enum(['user', 'root']), 'user'),
    }),
    {},
  ),
  workspace: z.prefault(
    z.strictObject({
      mode: z._default(z.enum(WORKSPACE_MODES), 'overlay'),
      /** Extra secret-file patterns, added to the built-in list; matched in any case, like it. */
      hide: stringList,
      /** Patterns that un-hide what hide would mask (and the secrets git tracks); matched exactly as written. */
      expose: stringList,
      /** Directories the secret scan does not descend into. */
      scan_skip: z._default(z.array(z.string().check(z.minLength(1))), ['.git', 'node_modules']),
    }),
    {},
  ),
  mount: z._default(z.array(mount), []),
  network: z.prefault(
    z.strictObject({
      mode: z.optional(z.enum(NETWORK_MODES)),
      allow: hostList,
      deny: hostList,
      inspect: hostList,
      resolve: z._default(
        z.record(resolveName, z.string().check(z.refine((ip) => ipFamily(ip) !== 0, 'expected an IP address'))),
        {},
      ),
      upstream_ca: stringList,
      rule: z._default(z.array(requestRule), []),
    }),
    {},
  ),
  secrets: z._default(z.record(envName, secret), {}),
  resources: z.prefault(
    z.strictObject({
      memory: z.optional(size),
      pids: z.optional(z.number().check(z.int(), z.positive())),
      cpus: z.optional(z.number().check(z.positive())),
      timeout: z.optional(duration),
      /** What a run may write to the host's disk and the cell's scratch dirs (see docs/security.md). */
      disk: z._default(size, DEFAULT_DISK_LIMIT),
    }),
    {},
  ),
  env: z._default(z.record(envName, z.string()), {}),
  agent: z.prefault(
    z.strictObject({
      name: z.optional(z.string()),
      args: z._default(z.array(z.string()), []),
      /** An npm version or tag of the agent's CLI (default: the adapter's pinned version). */
      version: z.optional(z.string().check(z.minLength(1))),
      /** "npm": a cached toolchain agentcell installs; "host": the host's own binary, bound read-only. */
      source: z.optional(z.enum(['npm', 'host'])),
      /** A read-only note in the agent's home (and its native instructions file) saying it is in a cell. */
      brief: z._default(z.boolean(), true),
    }),
    {},
  ),
});

export type Policy = z.output<typeof PolicySchema>;
export type PolicyInput = z.input<typeof PolicySchema>;
