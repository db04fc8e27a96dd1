import type { Decision, EgressReload, Receipt } from './receipt.js';

/** `receipt show --format json`: the receipt itself, as stored. */
export function renderReceiptJson(receipt: Receipt): string {
  return `${JSON.stringify(receipt, null, 2)}\n`;
}

/**
 * `receipt show` for people: what ran, how it ended, under what, and what it changed.
 * A run's own receipt always says `pending` (decisions are later receipts); pass
 * `decision` (from `decisionFor`) to show what was decided since.
 */
export function renderReceiptMarkdown(r: Receipt, options: { decision?: Decision } = {}): string {
  const lines: string[] = [];
  lines.push(`# ${headline(r, options.decision ?? r.decision)}`, '');
  lines.push(
    `- **receipt** \`${r.id}\` (#${r.seq} in cell \`${r.cell}\`)`,
    `- **command** \`${r.command.map(shellQuote).join(' ')}\``,
  );
  if (r.kind === 'decision' && r.decides) lines.push(`- **decides** run \`${r.decides}\``);
  if (r.scope)
    lines.push(`- **partial**: only ${r.scope.paths.map((p) => `\`${p}\``).join(', ')}; the rest stayed pending`);
  lines.push(
    `- **time** ${r.startedAt} → ${r.endedAt} (${formatDuration(r.durationMs)})`,
    `- **policy** \`${r.policy.hash}\` (mode ${r.policy.mode})`,
    `- **backend** ${r.backend.name} ${r.backend.version}`,
  );
  if (r.image) lines.push(`- **image** ${r.image.ref} \`${r.image.digest}\``);
  lines.push('', '## Assurance', '', `**${r.assurance.level}**`);
  if (r.assurance.reasons.length > 0) lines.push('', ...r.assurance.reasons.map((reason) => `- ${reason}`));

  const git = r.workspace.gitRef
    ? `git ${r.workspace.gitRef}${r.workspace.gitDirty ? ' (uncommitted changes)' : r.workspace.gitDirty === false ? ' (clean)' : ''}`
    : 'not a git checkout';
  lines.push(
    '',
    '## Workspace',
    '',
    `- **path** \`${r.workspace.path}\` (${r.workspace.mode})`,
    `- **${git}**`,
    `- **checkpoint** ${r.checkpoint.before ?? '—'} → ${r.checkpoint.after ?? '—'}`,
    `- **changes** ${r.changes.added} added, ${r.changes.modified} modified, ${r.changes.deleted} deleted`,
  );
  if (r.mounts.length > 0)
    lines.push('- **mounts**', ...r.mounts.map((m) => `  - \`${m.source}\` → \`${m.target}\` (${m.mode})`));
  if (r.env.length > 0) lines.push(`- **env** ${r.env.map((name) => `\`${name}\``).join(', ')}`);
  const turns = r.turns ?? [];
  if (turns.length > 0)
    lines.push(
      '- **turn checkpoints** (`restore --to turn:N@' + r.id + '`)',
      ...turns.map(
        (t) =>
          `  - turn ${t.turn} at ${t.at}: ${t.contentHash !== null ? `\`${t.contentHash}\`` : `none (${t.skipped ?? 'not taken'})`}`,
      ),
    );

  lines.push('', '## Egress', '', `${r.egress.allowed} allowed, ${r.egress.denied} denied`);
  const reloads = r.egress.reloads ?? [];
  if (reloads.length > 0) lines.push('', '### Allowlist reloads', '', ...reloads.flatMap(reloadLines));

  const tools = Object.entries(r.tools);
  if (tools.length > 0) lines.push('', '## Tools', '', ...tools.map(([name, version]) => `- ${name} ${version}`));
  const timings = Object.entries(r.timings);
  if (timings.length > 0)
    lines.push('', '## Timings', '', ...timings.map(([phase, ms]) => `- ${phase}: ${formatDuration(ms)}`));

  lines.push(
    '',
    '## Signature',
    '',
    `${r.signature.alg}, key \`${r.signature.keyId}\`; prev \`${r.prev ?? 'none (first receipt)'}\``,
    '',
  );
  return lines.join('\n');
}

/** One reload: when, who, the new policy hash, then each entry that widened (+) or narrowed (−) the cell. */
function reloadLines(reload: EgressReload): string[] {
  const lines = [
    `- ${reload.time} by ${reload.by.user} (pid ${reload.by.pid}): policy \`${reload.policyHash}\`, ${reload.revoked} open connection(s) revoked`,
  ];
  const entry = (sign: string, key: string, value: string, effect: string): string =>
    `  - ${sign} ${key} \`${value}\` (${effect})`;
  for (const value of reload.added.allow) lines.push(entry('+', 'allow', value, 'widened'));
  for (const value of reload.removed.allow) lines.push(entry('−', 'allow', value, 'narrowed'));
  for (const value of reload.added.deny) lines.push(entry('+', 'deny', value, 'narrowed'));
  for (const value of reload.removed.deny) lines.push(entry('−', 'deny', value, 'widened'));
  for (const value of reload.added.resolve) lines.push(entry('+', 'resolve', value, 'changed'));
  for (const value of reload.removed.resolve) lines.push(entry('−', 'resolve', value, 'changed'));
  if (lines.length === 1) lines.push('  - no change to the rules');
  return lines;
}

function headline(r: Receipt, decision: Decision): string {
  if (r.kind === 'decision') return `Decision: ${r.decision}`;
  if (r.status === 'interrupted') return `Run interrupted (agentcell stopped before it ended) · ${decision}`;
  const exit = r.exitCode === 0 ? 'exit 0' : `exit ${r.exitCode ?? 'unknown'} (failed)`;
  return `Run completed · ${exit} · ${decision}`;
}

function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
