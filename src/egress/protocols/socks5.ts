import type { Socket } from 'node:net';
import type { GatewayContext } from '../gateway/gateway-context.js';
import type { EgressReason } from '../log/egress-log.js';
import { FrameError, readFrame } from '../stream/read-frame.js';
import { endRefused, type Denial } from './deny-response.js';
import {
  COMMAND_CONNECT,
  METHOD_NONE_ACCEPTABLE,
  METHOD_USER_PASSWORD,
  parseGreeting,
  parseRequest,
  parseUserPassword,
  SOCKS_VERSION,
  socksReply,
  type SocksReplyCode,
} from './socks5-messages.js';

/**
 * SOCKS5 (the first byte was 0x05): user/password auth with the token (RFC 1929), a
 * CONNECT by name or address, the checked destination, then the tunnel. A refusal is
 * the SOCKS reply code for it (0x02 not allowed, 0x04/0x05 resolve/connect failures).
 */
export async function handleSocks5(gateway: GatewayContext, client: Socket, initial: Buffer): Promise<void> {
  const started = Date.now();
  const deny = (reply: Buffer, denial: Denial, address: string | null = null): void => {
    gateway.record('socks', started, { ...denial, address, decision: 'deny' });
    endRefused(client, reply);
  };
  const anonymous = { host: '', port: 0, rule: null };
  try {
    const greeting = await readFrame(client, initial, parseGreeting);
    if (!greeting.value.includes(METHOD_USER_PASSWORD))
      return deny(Buffer.from([SOCKS_VERSION, METHOD_NONE_ACCEPTABLE]), {
        ...anonymous,
        reason: 'proxy-auth-required',
      });
    client.write(Buffer.from([SOCKS_VERSION, METHOD_USER_PASSWORD]));
    const credentials = await readFrame(client, greeting.rest, parseUserPassword);
    const { user, password } = credentials.value;
    if (!gateway.credentialsValid(user, password))
      return deny(Buffer.from([0x01, 0x01]), { ...anonymous, reason: 'proxy-auth-invalid' });
    client.write(Buffer.from([0x01, 0x00]));
    const request = await readFrame(client, credentials.rest, parseRequest);
    const { command, host, port } = request.value;
    if (host === undefined)
      return deny(socksReply(0x08), { ...anonymous, reason: 'unsupported', detail: 'SOCKS address type' });
    if (command !== COMMAND_CONNECT)
      return deny(socksReply(0x07), { host, port, rule: null, reason: 'unsupported', detail: 'SOCKS command' });
    const result = await gateway.tunnelDestination(host, port);
    if (!result.ok) return deny(socksReply(socksCode(result.denial.reason)), result.denial, result.address);
    client.write(socksReply(0x00));
    await gateway.joinTunnel(client, request.rest, 'socks', result, started);
  } catch (error) {
    if (error instanceof FrameError && error.why !== 'closed')
      gateway.record('socks', started, { ...anonymous, address: null, decision: 'deny', reason: 'bad-request' });
    client.destroy();
  }
}

function socksCode(reason: EgressReason): SocksReplyCode {
  switch (reason) {
    case 'resolve-failed':
      return 0x04;
    case 'connect-failed':
      return 0x05;
    case 'gateway-closing':
      return 0x01;
    default:
      return 0x02;
  }
}
