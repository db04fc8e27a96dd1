/**
 * The enforcement canaries' prelude: a shell script the cell runs in front of the command
 * (after the egress bridge's prelude, if any). It sources the probe plan the host wrote
 * into the run's canary dir, runs each probe, writes one line per probe to `results`
 * (`probe<TAB>result<TAB>detail`, a file the host made) and a last line `end<TAB>exec|stop`,
 * then execs the command, or stops (exit 3) when a probe got through and the plan says to.
 *
 * Cheap by construction (issue 15: a few ms on bwrap): under bash (the prelude's shell
 * where the cell's root is known to have it) every probe runs in the prelude's own
 * process, no fork and no exec. The file probes are builtins; in a cell whose network
 * namespace has no interface but loopback, a connect anywhere else fails at once
 * (ENETUNREACH), so the network probes need no time bound and no process of their own;
 * the gateway's CONNECT is sent first and its answer read last, so its round trip runs
 * alongside the other probes. Only a cell that shows another interface (the boundary
 * already in doubt) gives each connect a process and a 3 s bound, so a dropped SYN can't
 * hang the run. Under /bin/sh (an image the host can't look into) the prelude execs
 * itself in bash, in place, where the cell has bash.
 *
 * The plan is emptied once read, so the command does not find the host paths it names.
 * Its vocabulary:
 *
 * - `net GROUP…`, one call with every network probe, first in the plan: `gateway HOST`
 *   (the gateway answers a CONNECT to a host no policy allows with 403; the credential is
 *   `_ac_auth`, a line the host adds to the file only, so no printed plan shows it),
 *   `tcp NAME HOST PORT` (no TCP connection to a public or the metadata address) and
 *   `dns NAME` (NAME does not resolve in the cell);
 * - `_ac_stop=0` (PLAN_RUN_ON, breakglass): record what got through, but run the command;
 * - `masked_file PATH`: a masked workspace file has no readable content;
 * - `masked_dir PATH`: a masked directory lists nothing;
 * - `host_path PATH`: a host path (agentcell's keys and state, the host home) is absent or empty;
 * - `write_refused PATH`: creating a file in a directory (or opening a file for append) fails;
 * - `skip PROBE WHY`: a probe that does not apply here, recorded as skipped.
 *
 * The prelude's own variables start with `_ac_` and its loop variables are local, so an
 * environment variable of the command's (say `R` or `D`) reaches it unchanged.
 */

/** Where the run's canary dir (plan in, results out) is bound in the cell. */
export const CELL_CANARY_DIR = '/run/agentcell-enforcement';
/** The name argv[0] of the prelude's shell gets: how a wrapped argv is recognised. */
export const CANARY_ARGV0 = 'agentcell-canaries';
/** The prelude's exit code when a probe got through (agentcell's "host not ready" code). */
export const CANARY_STOP_EXIT = 3;
/** The results file in the run's canary dir (the host makes it, so the cell's umask does not matter). */
export const CANARY_RESULTS = 'results';
/** The plan line that lets the command run past a probe that got through (breakglass). */
export const PLAN_RUN_ON = '_ac_stop=0';

const RESULTS = `${CELL_CANARY_DIR}/${CANARY_RESULTS}`;

/** One result line. */
const REC = String.raw`_ac_r=${RESULTS}
rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$_ac_r"; }`;

/**
 * The network probes (bash: its `/dev/tcp`). `_ac_try HOST PORT` sets `r` to `open`,
 * `timeout` or the connect's first error line (a name that fails to resolve reports
 * before any connect; one that resolves reports `connect:`; LC_ALL=C keeps the messages
 * stable). The descriptors bash picks itself (10 and up), so none the command inherits is
 * touched, and each is closed before the command runs.
 */
const NET = String.raw`_ac_net() {
  local LC_ALL=C fast=1 l n=0 r
  # No interface but loopback: a connect elsewhere fails at once, no bound needed.
  if [ -r /proc/net/dev ]; then
    while read -r l; do
      n=$((n+1)); [ "$n" -le 2 ] || case $l in lo:*) ;; *) fast=0;; esac
    done </proc/net/dev
  else fast=0; fi
  while [ $# -gt 0 ]; do
    case $1 in
      gateway) _ac_gateway_send "$2"; shift 2;;
      tcp) _ac_try "$3" "$4"
        case $r in
          open) rec "$2" through "connected to $3:$4";;
          timeout) rec "$2" inconclusive "no answer from $3:$4 in 3 s (packets may leave the cell)";;
          '') rec "$2" inconclusive "no outcome of a connect to $3:$4";;
          *) rec "$2" blocked "no connection to $3:$4";;
        esac; shift 4;;
      dns) _ac_try "$2" 80
        case $r in
          open|*connect:*) rec dns through "$2 resolved";;
          timeout|'') rec dns inconclusive "no answer resolving $2 in 3 s";;
          *) rec dns blocked "$2 did not resolve";;
        esac; shift 2;;
      *) shift;;
    esac
  done
}
_ac_try() {
  r=''
  if [ "$fast" = 1 ]; then
    if { exec {_ac_fd}<>"/dev/tcp/$1/$2"; } 2>"${CELL_CANARY_DIR}/err"; then exec {_ac_fd}>&-; r=open
    else read -r r <"${CELL_CANARY_DIR}/err"; fi
  else
    exec {_ac_fd}< <({ exec 3<>"/dev/tcp/$1/$2"; } 2>&1 && echo open)
    read -r -t 3 -u "$_ac_fd" r || [ -n "$r" ] || r=timeout
    exec {_ac_fd}<&-
  fi
}
_ac_gw=''
_ac_gateway_send() {
  if { exec {_ac_gwfd}<>/dev/tcp/127.0.0.1/3128; } 2>/dev/null; then
    printf 'CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\nProxy-Authorization: Basic %s\r\n\r\n' "$1" "$1" "$_ac_auth" >&"$_ac_gwfd"
    _ac_gw=$1
  else rec gateway-deny inconclusive "nothing answered on the gateway bridge's 127.0.0.1:3128"; fi
}
_ac_gateway_read() {
  [ -n "$_ac_gw" ] || return 0
  local v s='' x
  read -r -t 3 v s x <&"$_ac_gwfd"
  exec {_ac_gwfd}>&-
  case $s in
    403) rec gateway-deny blocked "the gateway refused $_ac_gw (403)";;
    2??) rec gateway-deny through "the gateway opened a tunnel to $_ac_gw ($s)";;
    *) rec gateway-deny inconclusive "the gateway answered CONNECT $_ac_gw with '$s'";;
  esac
}`;

const HEAD = String.raw`${REC}
_ac_auth=''
: >"$_ac_r" || { echo "agentcell: cannot write the enforcement results in the cell" >&2; exit ${CANARY_STOP_EXIT}; }
_ac_stop=1
skip() { rec "$1" skipped "$2"; }
masked_file() {
  local l
  if [ -s "$1" ] && { IFS= read -r l || [ -n "$l" ]; } 2>/dev/null <"$1"; then rec masked-file through "read $1"
  else rec masked-file blocked "$1 has no readable content"; fi
}
masked_dir() {
  local e
  for e in "$1"/* "$1"/.[!.]* "$1"/..?*; do
    if [ -e "$e" ] || [ -L "$e" ]; then rec masked-dir through "listed $e"; return; fi
  done
  rec masked-dir blocked "$1 lists nothing"
}
host_path() {
  local e l
  if [ -d "$1" ]; then
    for e in "$1"/* "$1"/.[!.]* "$1"/..?*; do
      if [ -e "$e" ] || [ -L "$e" ]; then rec host-path through "listed $e"; return; fi
    done
    rec host-path blocked "$1 is empty in the cell"
  elif [ -s "$1" ] && { IFS= read -r l || [ -n "$l" ]; } 2>/dev/null <"$1"; then rec host-path through "read $1"
  else rec host-path blocked "$1 is absent"; fi
}
write_refused() {
  local f
  if [ -d "$1" ]; then
    f="$1/.agentcell-canary-$$"
    if true 2>/dev/null >"$f"; then rm -f "$f"; rec write-outside through "created a file in $1"
    else rec write-outside blocked "$1 refused a new file"; fi
  elif true 2>/dev/null >>"$1"; then rec write-outside through "opened $1 for writing"
  else rec write-outside blocked "$1 refused writing"; fi
}`;

const TAIL = String.raw`: >"${CELL_CANARY_DIR}/plan"
_ac_first=''
while IFS='	' read -r _ac_p _ac_s _ac_d; do # IFS: a tab
  if [ "$_ac_s" = through ]; then _ac_first="$_ac_p ($_ac_d)"; break; fi
done <"$_ac_r"
if [ -n "$_ac_first" ] && [ "$_ac_stop" = 1 ]; then
  printf 'end\tstop\t\n' >>"$_ac_r"
  echo "agentcell: enforcement canary $_ac_first got through; the command did not run" >&2
  exit ${CANARY_STOP_EXIT}
fi
printf 'end\texec\t\n' >>"$_ac_r"
exec "$@"`;

/** Under bash: the network probes are functions of the prelude itself. */
const BASH_SCRIPT = [
  HEAD,
  NET,
  'net() { _ac_net "$@"; }',
  `. "${CELL_CANARY_DIR}/plan"`,
  '_ac_gateway_read',
  TAIL,
].join('\n');

/**
 * Under /bin/sh: the same prelude in bash where the cell has it (an exec in place: no
 * fork, the pid stays), else the probes sh can run, the network ones skipped as such.
 */
const SH_SCRIPT = [
  `_ac_bash=${shellQuote(BASH_SCRIPT)}`,
  `command -v bash >/dev/null 2>&1 && exec bash --norc -c "$_ac_bash" ${CANARY_ARGV0} "$@"`,
  HEAD,
  String.raw`net() {
  while [ $# -gt 0 ]; do
    case $1 in tcp) skip "$2" "no bash in the cell"; shift 4;; dns) skip dns "no bash in the cell"; shift 2;;
      gateway) skip gateway-deny "no bash in the cell"; shift 2;; *) shift;; esac
  done
}`,
  `. "${CELL_CANARY_DIR}/plan"`,
  TAIL,
].join('\n');

/** The shells the prelude runs in: bash where the cell is known to have it (no process but the prelude). */
export type PreludeShell = '/bin/sh' | '/bin/bash';

/**
 * The prelude's argv before the command. `--norc`: bash reads ~/.bashrc and
 * /etc/bash.bashrc even without a terminal when its stdin is a socket (a node pipe is
 * one), which would cost time and could change the command's environment.
 */
const PRELUDES: Record<PreludeShell, readonly string[]> = {
  '/bin/sh': ['/bin/sh', '-c', SH_SCRIPT, CANARY_ARGV0],
  '/bin/bash': ['/bin/bash', '--norc', '-c', BASH_SCRIPT, CANARY_ARGV0],
};

/** The argv that runs the canaries, then `argv`. */
export function withCanaryPrelude(argv: readonly string[], shell: PreludeShell = '/bin/sh'): string[] {
  return [...PRELUDES[shell], ...argv];
}

/** The command of a wrapped argv (the argv itself when it is not wrapped). */
export function unwrapCanaryPrelude(argv: readonly string[]): string[] {
  const prelude = Object.values(PRELUDES).find((p) => p.every((arg, i) => argv[i] === arg));
  return argv.slice(prelude?.length ?? 0);
}

/** A wrapped argv with another command behind the same prelude (the command itself when not wrapped). */
export function replaceCanaryCommand(argv: readonly string[], command: readonly string[]): string[] {
  const own = unwrapCanaryPrelude(argv);
  return [...argv.slice(0, argv.length - own.length), ...command];
}

/** A probe call in the plan, its arguments single-quoted for sh. */
export function planLine(fn: string, ...args: string[]): string {
  return [fn, ...args.map(shellQuote)].join(' ');
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}
