import { AgentcellError } from '../errors.js';
import * as z from 'zod/mini';
import { MODES } from '../_internal/vocabulary.js';
import type { Mode, NetworkMode, Policy } from './schema.js';

export const ASSURANCE_LEVELS = ['high', 'reduced', 'breakglass'] as const;
export type AssuranceLevel = (typeof ASSURANCE_LEVELS)[number];

/** How much a run can be trusted to have stayed inside its cell, and why not more (receipts record it). */
export const AssuranceSchema = z.strictObject({
  mode: z.enum(MODES),
  level: z.enum(ASSURANCE_LEVELS),
  reasons: z.array(z.string()),
});
export type Assurance = z.infer<typeof AssuranceSchema>;

/** What each mode starts from when the policy says nothing about the network. */
export function defaultNetworkMode(mode: Mode): NetworkMode {
  return mode === 'build' || mode === 'breakglass' ? 'open' : 'none';
}

/** The lower-assurance choices a policy makes, one line each (DESIGN invariant 9). */
export function loweringChoices(policy: Policy): string[] {
  const reasons: string[] = [];
  if (policy.cell.mode !== 'strict') reasons.push(`mode ${policy.cell.mode}`);
  if (policy.network.mode === 'open') reasons.push('network open (no egress control)');
  if (policy.network.mode === 'learn')
    reasons.push('network learn (hosts outside the allowlist are reached and logged, not refused)');
  if (policy.workspace.mode === 'direct') reasons.push('workspace direct (host files change live)');
  for (const m of policy.mount) if (m.mode === 'rw') reasons.push(`rw mount ${m.source}`);
  for (const [name, s] of Object.entries(policy.secrets))
    if (s.inject !== 'proxy') reasons.push(`secret ${name} injected as ${s.inject} (the cell can read it)`);
  return reasons;
}

/** Strict mode refuses every lower-assurance choice instead of labeling it. */
export function assertModeAllows(policy: Policy, sourceOf: (key: string) => string): void {
  if (policy.cell.mode !== 'strict') return;
  const refusals: string[] = [];
  if (policy.network.mode === 'open' || policy.network.mode === 'learn')
    refusals.push(`network.mode = "${policy.network.mode}" (from ${sourceOf('network.mode')}); use "allowlist"`);
  if (policy.workspace.mode === 'direct')
    refusals.push(`workspace.mode = "direct" (from ${sourceOf('workspace.mode')}); use "readonly" or "overlay"`);
  for (const m of policy.mount)
    if (m.mode === 'rw') refusals.push(`[[mount]] ${m.source} with mode = "rw" (from ${sourceOf('mount')})`);
  for (const [name, s] of Object.entries(policy.secrets))
    if (s.inject !== 'proxy') refusals.push(`secrets.${name}.inject = "${s.inject}"; use "proxy"`);
  if (refusals.length > 0)
    throw new AgentcellError(
      'MODE_REFUSED',
      `mode "strict" refuses lower-assurance choices:\n  ${refusals.join('\n  ')}\nChange them, or choose --mode development.`,
    );
}

const SHOWN = 5;

/** Paths for a message: the first few, then how many more. */
function listed(paths: readonly string[]): string {
  const more = paths.length - SHOWN;
  return paths.slice(0, SHOWN).join(', ') + (more > 0 ? ` and ${more} more` : '');
}

/**
 * Why a run's assurance is lower when git holds secrets: a file the scan masks is still
 * readable from `.git/objects` if git tracks it (or has it staged), and git needs its
 * objects, so they can't be masked.
 */
export function trackedSecretReasons(tracked: readonly string[], unchecked: readonly string[]): string[] {
  return [
    ...(tracked.length > 0
      ? [`${tracked.length} secret-named file(s) tracked by git, readable in the cell from .git: ${listed(tracked)}`]
      : []),
    ...unchecked.map((reason) => `git's tracked files not checked for secrets (${reason})`),
  ];
}

/** Strict mode refuses a workspace whose git holds secret-named files, unless the policy exposes them. */
export function assertNoTrackedSecrets(mode: Mode, tracked: readonly string[]): void {
  if (mode !== 'strict' || tracked.length === 0) return;
  const expose = tracked.slice(0, SHOWN).map((p) => JSON.stringify(p));
  throw new AgentcellError(
    'MODE_REFUSED',
    `mode "strict" refuses this workspace: git tracks secret-named files, whose content the cell could read from .git/objects even though the files are masked: ${listed(tracked)}.
` +
      `If they hold secrets: remove them from git (git rm --cached, then purge them from history) and rotate them. ` +
      `If they are not secrets: expose them on purpose in agentcell.toml ([workspace] expose = [${expose.join(', ')}]). ` +
      `Or choose --mode development, which runs and labels it.`,
  );
}

/** Breakglass must be acknowledged with today's date, so it is never a habit or a saved default. */
export function assertBreakglassAck(mode: Mode, ack: string | undefined, today: string): void {
  if (mode !== 'breakglass') return;
  if (ack === today) return;
  const got = ack === undefined ? '' : ` (got "${ack}")`;
  throw new AgentcellError(
    'BREAKGLASS_ACK_REQUIRED',
    `mode "breakglass" turns off protections; acknowledge it for today with --ack-breakglass=${today}${got}`,
  );
}

export function assess(policy: Policy, extraReasons: readonly string[] = []): Assurance {
  const reasons = [...loweringChoices(policy), ...extraReasons];
  const level: AssuranceLevel =
    policy.cell.mode === 'breakglass' ? 'breakglass' : reasons.length === 0 ? 'high' : 'reduced';
  return { mode: policy.cell.mode, level, reasons };
}

export function localDate(now: Date = new Date()): string {
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}
