import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import {
  createEgressGateway,
  type EgressGateway,
  type EgressGatewayOptions,
} from '../src/egress/gateway/egress-gateway.js';
import type { EgressEvent } from '../src/egress/log/egress-log.js';
import { readEgressLog } from '../src/egress/log/egress-log-reader.js';
import { newProxyToken } from '../src/egress/gateway/proxy-auth.js';

export interface TestGateway {
  gateway: EgressGateway;
  port: number;
  token: string;
  /** Every decision the gateway made, in order. */
  events: EgressEvent[];
  logPath: string;
  /** The gateway's own fresh directory (its log lives here). */
  dir: string;
}

/**
 * An egress gateway on an ephemeral loopback port with a fresh token and log under
 * `parent`; `options` add to or override the defaults (rules, inspect, socket, …).
 * The caller closes it.
 */
export async function startTestGateway(
  parent: string,
  options: Pick<EgressGatewayOptions, 'rules'> & Partial<EgressGatewayOptions>,
): Promise<TestGateway> {
  const dir = mkdtempSync(join(parent, 'gw-'));
  const token = newProxyToken();
  const events: EgressEvent[] = [];
  const logPath = join(dir, 'run.jsonl');
  const gateway = createEgressGateway({
    token,
    tcp: { host: '127.0.0.1', port: 0 },
    logPath,
    cell: 'test-cell',
    run: 'run-1',
    onEvent: (event) => events.push(event),
    ...options,
  });
  const address = await gateway.listen();
  return { gateway, port: address.tcp?.port ?? 0, token, events, logPath, dir };
}

/**
 * After the gateway closed: its log reads back through the egress event schema as exactly
 * the events it reported, so the reader accepts every shape the real writer produces.
 */
export function assertLogReadsBack(gw: Pick<TestGateway, 'events' | 'logPath'>): void {
  assert.deepEqual(readEgressLog(gw.logPath).events, JSON.parse(JSON.stringify(gw.events)), gw.logPath);
}
