import type { CellEgress } from '../../backends/backend.js';
import { PROXY_USER } from '../gateway/proxy-auth.js';
import { NOT_HANDED, perlHandoffProgram } from './perl-handoff.js';

/** Where the gateway wiring appears inside a cell (a tmpfs `/run`, so nothing of the host's). */
export const CELL_EGRESS_DIR = '/run/agentcell';
export const CELL_EGRESS_SOCKET = `${CELL_EGRESS_DIR}/egress.sock`;
export const CELL_BRIDGE_SCRIPT = `${CELL_EGRESS_DIR}/agentcell-bridge.cjs`;
/** The host's node, bound here when the cell runs on the host rootfs. */
export const CELL_BRIDGE_NODE = `${CELL_EGRESS_DIR}/node`;
/** The loopback port the bridge listens on inside the cell. */
export const CELL_PROXY_PORT = 3128;
/** How long the prelude waits for the bridge's `ready` line: 500 polls of 10 ms. */
const READY_POLLS = 500;
/**
 * The bridge's node runs without the cell's node variables: NODE_EXTRA_CA_CERTS (an agent's
 * cell CA) makes node build its whole root store at start-up (+30 ms, on every gateway run's
 * critical path) for a bridge that makes no TLS connection, and NODE_OPTIONS is the command's.
 */
const BRIDGE_ENV = 'NODE_EXTRA_CA_CERTS= NODE_OPTIONS=';
/** The same for the perl helper: no module or option the cell's environment names is loaded into it. */
const PERL_ENV = 'PERL5OPT= PERL5LIB= PERLLIB= PERL5DB=';

/**
 * The variables that point a cell's tools at the bridge. The token appears only in the
 * proxy URLs and AGENTCELL_PROXY_TOKEN (for the ssh ProxyCommand); it is per run and
 * useless outside the cell's socket.
 */
export function proxyEnvironment(token: string, node: string): Record<string, string> {
  const credentials = `${PROXY_USER}:${token}`;
  const http = `http://${credentials}@127.0.0.1:${CELL_PROXY_PORT}`;
  const socks = `socks5h://${credentials}@127.0.0.1:${CELL_PROXY_PORT}`;
  const noProxy = 'localhost,127.0.0.1,::1';
  return {
    HTTP_PROXY: http,
    HTTPS_PROXY: http,
    http_proxy: http,
    https_proxy: http,
    ALL_PROXY: socks,
    all_proxy: socks,
    NO_PROXY: noProxy,
    no_proxy: noProxy,
    npm_config_proxy: http,
    npm_config_https_proxy: http,
    GIT_SSH_COMMAND: `ssh -o ProxyCommand='${node} ${CELL_BRIDGE_SCRIPT} connect ${CELL_EGRESS_SOCKET} %h %p'`,
    AGENTCELL_PROXY_TOKEN: token,
  };
}

/**
 * The command a gateway cell runs: a POSIX sh prelude starts the bridge (detached from
 * the command, so it is not the command's child), waits for its `ready` line, then execs
 * the command, which keeps the shell's pid, its exit code and its signals. If the bridge
 * never says ready, the command does not run (exit 125): no bridge, no network anyway.
 */
export function withBridge(node: string, argv: readonly string[]): string[] {
  const ready = '/tmp/.agentcell-bridge-ready';
  const script = [
    `r=${ready}`,
    `(${BRIDGE_ENV} ${node} ${CELL_BRIDGE_SCRIPT} listen ${CELL_EGRESS_SOCKET} ${CELL_PROXY_PORT} </dev/null >"$r" &)`,
    'i=0',
    'until [ -s "$r" ] && read -r w p <"$r" && [ "$w" = ready ]; do',
    `  i=$((i+1)); if [ "$i" -gt ${READY_POLLS} ]; then echo "agentcell: the egress bridge did not start in the cell" >&2; exit 125; fi`,
    '  sleep 0.01',
    'done',
    'rm -f "$r"',
    'exec "$@"',
  ].join('\n');
  return ['/bin/sh', '-c', script, 'agentcell-cell', ...argv];
}

/**
 * The same where the backend passes descriptors (bwrap): a helper in the foreground makes
 * the 127.0.0.1 listener, hands it to agentcell over the IPC channel agentcell's spawn made
 * and exits once agentcell has it (so no poll: the prelude goes on when the helper is done).
 * The helper is the rootfs's /usr/bin/perl where there is one (perl-handoff.ts: ~3 ms),
 * else, or when perl handed nothing over (NOT_HANDED: no Socket module, say), the bridge on
 * node (~30 ms). The prelude then closes the channel's descriptor and drops NODE_CHANNEL_*
 * from the environment, so the command gets neither, and execs the command. A helper that
 * could not hand over (no channel, agentcell refused or gone) means no command (exit 125),
 * as above. `perlPath` is for tests.
 */
export function withHandoff(
  node: string,
  argv: readonly string[],
  arch: NodeJS.Architecture = process.arch,
  perlPath = '/usr/bin/perl',
): string[] {
  const perl = perlHandoffProgram(arch);
  const script = [
    `h=${NOT_HANDED}`,
    ...(perl === undefined
      ? []
      : [`if [ -x ${perlPath} ]; then ${PERL_ENV} ${perlPath} -e '${perl}' ${CELL_PROXY_PORT} </dev/null; h=$?; fi`]),
    `if [ "$h" = ${NOT_HANDED} ]; then ${BRIDGE_ENV} ${node} ${CELL_BRIDGE_SCRIPT} handoff ${CELL_PROXY_PORT} </dev/null; h=$?; fi`,
    '[ "$h" = 0 ] || { echo "agentcell: the egress bridge could not hand its listener to agentcell" >&2; exit 125; }',
    // One digit (a shell's redirection takes no more); agentcell's backend passes 6.
    'case ${NODE_CHANNEL_FD-} in [3-9]) eval "exec ${NODE_CHANNEL_FD}<&-";; *) echo "agentcell: no IPC channel to close" >&2; exit 125;; esac',
    'unset NODE_CHANNEL_FD NODE_CHANNEL_SERIALIZATION_MODE',
    'exec "$@"',
  ].join('\n');
  return ['/bin/sh', '-c', script, 'agentcell-cell', ...argv];
}

/** node for the bridge: a host binary to bind in, or a path inside a directory rootfs. */
export type BridgeNode = { bind: string } | { path: string };

/** What a gateway cell's backend binds in and runs in front of the command (CellSpec.egress). */
export function cellEgressWiring(socketPath: string, bridgeScript: string, node: BridgeNode): CellEgress {
  const binds = [
    { source: socketPath, target: CELL_EGRESS_SOCKET },
    { source: bridgeScript, target: CELL_BRIDGE_SCRIPT },
  ];
  if ('bind' in node) binds.push({ source: node.bind, target: CELL_BRIDGE_NODE });
  const path = 'bind' in node ? CELL_BRIDGE_NODE : node.path;
  return { socketPath, binds, argvPrefix: withBridge(path, []), handoffPrefix: withHandoff(path, []) };
}
