import { AgentcellError } from '../errors.js';
import type { Mode, NetworkMode, Policy } from './schema.js';

export type AssuranceLevel = 'high' | 'reduced' | 'breakglass';

/** How much a run can be trusted to have stayed inside its cell, and why not more. */
export interface Assurance {
  mode: Mode;
  level: AssuranceLevel;
  reasons: string[];
}

/** What each mode starts from when the policy says nothing about the network. */
export function defaultNetworkMode(mode: Mode): NetworkMode {
  return mode === 'build' || mode === 'breakglass' ? 'open' : 'none';
}

/** The lower-assurance choices a policy makes, one line each (DESIGN invariant 9). */
export function loweringChoices(policy: Policy): string[] {
  const reasons: string[] = [];
  if (policy.cell.mode !== 'strict') reasons.push(`mode ${policy.cell.mode}`);
  if (policy.network.mode === 'open') reasons.push('network open (no egress control)');
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
  if (policy.network.mode === 'open') refusals.push(`network.mode = "open" (from ${sourceOf('network.mode')})`);
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
