import { randomInt } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as z from 'zod/mini';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { writeFileAtomic } from '../_internal/atomic-file.js';
import { cellDir, listCells } from '../cell/cell-store.js';

/**
 * A detached session's record, `<cellDir>/sessions/<id>/session.json`: written by the
 * command that starts it, then by its supervisor while it lives, and by the first
 * command that finds the supervisor dead (state `lost`). Read back through the schema.
 */
export const SESSION_STATES = ['starting', 'running', 'exited', 'failed', 'lost'] as const;
export type SessionState = (typeof SESSION_STATES)[number];

const owner = z.object({ pid: z.number(), startTime: z.nullable(z.string()), host: z.string() });

export const SessionRecordSchema = z.object({
  version: z.literal(1),
  id: z.string().check(z.regex(/^s-[0-9a-z]{17}$/)),
  cell: z.string(),
  workspace: z.string(),
  /** The agent adapter, or null for a plain command. */
  agent: z.nullable(z.string()),
  /** What the user asked to run (an agent's arguments, or the command). */
  command: z.array(z.string()),
  createdAt: z.string(),
  state: z.enum(SESSION_STATES),
  /** The supervisor: set by itself when it starts. */
  supervisor: z.nullable(owner),
  /** The pty holder (`script` or python) the starter spawned: the supervisor's parent. */
  pty: z.nullable(owner),
  /** The control socket (0600): in the session's dir, or reached through /proc/self/fd when its path is too long. */
  socket: z.string(),
  /** The run (its receipt id): known once the cell started. */
  run: z.nullable(z.string()),
  startedAt: z.nullable(z.string()),
  endedAt: z.nullable(z.string()),
  exitCode: z.nullable(z.number()),
  /** The run's receipt, once signed (`interrupted` for a lost session). */
  receipt: z.nullable(z.string()),
  /** What the terminal printed, as stored: its sha256 and size (the receipt has the same). */
  transcript: z.optional(z.object({ sha256: z.string(), bytes: z.number() })),
  /** Why a session failed before its cell started. */
  error: z.optional(z.object({ code: z.string(), message: z.string() })),
});
export type SessionRecord = z.infer<typeof SessionRecordSchema>;

const ID = /^s-[0-9a-z]{17}$/;

/** `s-` + 9 base36 digits of epoch milliseconds + 8 random: sorts by time, like run ids. */
export function newSessionId(now: Date = new Date()): string {
  let suffix = '';
  while (suffix.length < 8) suffix += randomInt(36).toString(36);
  return `s-${now.getTime().toString(36).padStart(9, '0')}${suffix}`;
}

export function sessionsDir(paths: AgentcellPaths, cell: string): string {
  return join(cellDir(paths, cell), 'sessions');
}

export function sessionDir(paths: AgentcellPaths, cell: string, id: string): string {
  return join(sessionsDir(paths, cell), id);
}

export function writeSession(dir: string, record: SessionRecord): void {
  writeFileAtomic(join(dir, 'session.json'), `${JSON.stringify(record, null, 2)}\n`, 0o600, { durable: false });
}

export function readSession(dir: string): SessionRecord {
  const path = join(dir, 'session.json');
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (cause) {
    throw new AgentcellError('SESSION_INVALID', `cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
  const parsed = SessionRecordSchema.safeParse(value);
  if (!parsed.success)
    throw new AgentcellError(
      'SESSION_INVALID',
      `${path} is not a session record (${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}); remove its directory`,
    );
  return parsed.data;
}

/** Updates a session's record (read, change, write back). */
export function updateSession(dir: string, patch: Partial<SessionRecord>): SessionRecord {
  const record = { ...readSession(dir), ...patch };
  writeSession(dir, record);
  return record;
}

export interface LocatedSession {
  dir: string;
  record: SessionRecord;
}

/** Every session of every cell (or of one), oldest first. */
export function allSessions(paths: AgentcellPaths, cell?: string): LocatedSession[] {
  const cells = cell !== undefined ? [cell] : listCells(paths).map((c) => c.name);
  const found: LocatedSession[] = [];
  for (const name of cells) {
    let ids: string[];
    try {
      ids = readdirSync(sessionsDir(paths, name)).filter((id) => ID.test(id));
    } catch {
      continue;
    }
    for (const id of ids) {
      const dir = sessionDir(paths, name, id);
      found.push({ dir, record: readSession(dir) });
    }
  }
  return found.sort((a, b) => a.record.id.localeCompare(b.record.id));
}

/** A session by id (or a unique prefix of it), in any cell. */
export function findSession(paths: AgentcellPaths, id: string): LocatedSession {
  const all = allSessions(paths);
  const exact = all.find((s) => s.record.id === id);
  if (exact) return exact;
  const matches = all.filter((s) => s.record.id.startsWith(id));
  if (matches.length === 1 && matches[0]) return matches[0];
  throw new AgentcellError(
    'SESSION_NOT_FOUND',
    matches.length > 1
      ? `session id ${id} is ambiguous (${matches.map((s) => s.record.id).join(', ')}); give more of it`
      : `no session ${id}; agentcell session list shows them`,
  );
}
