/**
 * The enforcement canaries' prelude: a POSIX sh script the cell runs in front of the
 * command (after the egress bridge's prelude, if any). It sources the probe plan the
 * host wrote into the run's canary dir, runs each probe, writes one line per probe to
 * `results` (`probe<TAB>result<TAB>detail`) and a last line `end<TAB>exec|stop`, then
 * execs the command, or stops (exit 3) when a probe got through and the plan says to.
 *
 * Costs no cell start of its own: the file probes are shell builtins, the network probes
 * one `bash` (its `/dev/tcp`), and the gateway probe `base64`. The plan is emptied once
 * read, so the command does not find the host paths it names. The plan's vocabulary:
 *
 * - `masked_file PATH`: a masked workspace file has no readable content;
 * - `masked_dir PATH`: a masked directory lists nothing;
 * - `host_path PATH`: a host path (agentcell's keys and state, the host home) is absent or empty;
 * - `write_refused PATH`: creating a file in a directory (or opening a file for append) fails;
 * - `net GROUP…`, one call with every network probe: `tcp NAME HOST PORT` (no TCP connection
 *   to a public or the metadata address), `dns NAME` (NAME does not resolve in the cell),
 *   and last `gateway HOST` (the gateway answers a CONNECT to a host no policy allows with 403);
 * - `skip PROBE WHY`: a probe that does not apply here, recorded as skipped.
 */

/** Where the run's canary dir (plan in, results out) is bound in the cell. */
export const CELL_CANARY_DIR = '/run/agentcell-enforcement';
/** The name argv[0] of the prelude's shell gets: how a wrapped argv is recognised. */
export const CANARY_ARGV0 = 'agentcell-canaries';
/** The prelude's exit code when a probe got through (agentcell's "host not ready" code). */
export const CANARY_STOP_EXIT = 3;

/**
 * The network probes, one bash process for all of them (an exec costs milliseconds in a
 * cell): `/dev/tcp` connects in a process substitution, read with a 3 s bound, so a
 * dropped SYN can't hang the run. Arguments: the results file, then `tcp NAME HOST PORT`,
 * `dns NAME` and `gateway HOST AUTH` groups. A name that fails to resolve reports before
 * any connect; one that resolves reports `connect:` (LC_ALL=C keeps the messages stable).
 */
const NET = String.raw`R=$1; shift
LC_ALL=C
try() {
  local fd
  r=''
  exec {fd}< <({ exec 3<>"/dev/tcp/$1/$2"; } 2>&1 && echo open)
  read -r -t 3 -u "$fd" r || [ -n "$r" ] || r=timeout
  exec {fd}<&-
}
rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$R"; }
while [ $# -gt 0 ]; do
  case $1 in
    tcp) try "$3" "$4"
      case $r in
        open) rec "$2" through "connected to $3:$4";;
        timeout) rec "$2" inconclusive "no answer from $3:$4 in 3 s (packets may leave the cell)";;
        *) rec "$2" blocked "no connection to $3:$4";;
      esac; shift 4;;
    dns) try "$2" 80
      case $r in
        open|*connect:*) rec dns through "$2 resolved";;
        *) rec dns blocked "$2 did not resolve";;
      esac; shift 2;;
    gateway) s=$(exec 3<>/dev/tcp/127.0.0.1/3128 2>/dev/null || exit 1
      printf 'CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\nProxy-Authorization: Basic %s\r\n\r\n' "$2" "$2" "$3" >&3
      read -r -t 3 v s r <&3; echo "$s")
      case $s in
        403) rec gateway-deny blocked "the gateway refused $2 (403)";;
        2??) rec gateway-deny through "the gateway opened a tunnel to $2 ($s)";;
        *) rec gateway-deny inconclusive "the gateway answered CONNECT $2 with '$s'";;
      esac; shift 3;;
    *) shift;;
  esac
done`;

const SCRIPT = String.raw`D=${CELL_CANARY_DIR}
NET=${shellQuote(NET)}
umask 022
R="$D/results"
: >"$R" || { echo "agentcell: cannot write the enforcement results in the cell" >&2; exit ${CANARY_STOP_EXIT}; }
STOP=1
NETARGS=''
rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$R"; }
skip() { rec "$1" skipped "$2"; }
masked_file() {
  if [ -s "$1" ] && { IFS= read -r l || [ -n "$l" ]; } 2>/dev/null <"$1"; then rec masked-file through "read $1"
  else rec masked-file blocked "$1 has no readable content"; fi
}
masked_dir() {
  for e in "$1"/* "$1"/.[!.]* "$1"/..?*; do
    if [ -e "$e" ] || [ -L "$e" ]; then rec masked-dir through "listed $e"; return; fi
  done
  rec masked-dir blocked "$1 lists nothing"
}
host_path() {
  if [ -d "$1" ]; then
    for e in "$1"/* "$1"/.[!.]* "$1"/..?*; do
      if [ -e "$e" ] || [ -L "$e" ]; then rec host-path through "listed $e"; return; fi
    done
    rec host-path blocked "$1 is empty in the cell"
  elif [ -s "$1" ] && { IFS= read -r l || [ -n "$l" ]; } 2>/dev/null <"$1"; then rec host-path through "read $1"
  else rec host-path blocked "$1 is absent"; fi
}
write_refused() {
  if [ -d "$1" ]; then
    f="$1/.agentcell-canary-$$"
    if true 2>/dev/null >"$f"; then rm -f "$f"; rec write-outside through "created a file in $1"
    else rec write-outside blocked "$1 refused a new file"; fi
  elif true 2>/dev/null >>"$1"; then rec write-outside through "opened $1 for writing"
  else rec write-outside blocked "$1 refused writing"; fi
}
net() {
  if [ -z "$BASH_VERSION" ] && ! command -v bash >/dev/null; then
    while [ $# -gt 0 ]; do
      case $1 in tcp) skip "$2" "no bash in the cell"; shift 4;; dns) skip dns "no bash in the cell"; shift 2;;
        gateway) skip gateway-deny "no bash in the cell"; shift 2;; *) shift;; esac
    done
    return
  fi
  # The gateway group comes last in the plan: its AUTH argument is added here, from the cell's own token.
  case " $* " in *" gateway "*)
    set -- "$@" "$(printf 'agentcell:%s' "$AGENTCELL_PROXY_TOKEN" | base64 | tr -d '\n')";;
  esac
  # Under bash (the prelude's shell where the cell is known to have it) in a subshell: no exec.
  if [ -n "$BASH_VERSION" ]; then (set -- "$R" "$@"; eval "$NET"); else bash -c "$NET" agentcell-net "$R" "$@"; fi
}
. "$D/plan"
: >"$D/plan"
first=''
while IFS='	' read -r p r d; do # IFS: a tab
  if [ "$r" = through ]; then first="$p ($d)"; break; fi
done <"$R"
if [ -n "$first" ] && [ "$STOP" = 1 ]; then
  printf 'end\tstop\t\n' >>"$R"
  echo "agentcell: enforcement canary $first got through; the command did not run" >&2
  exit ${CANARY_STOP_EXIT}
fi
printf 'end\texec\t\n' >>"$R"
exec "$@"`;

/** The shells the prelude runs in: bash where the cell is known to have it (one exec fewer: see NET). */
export type PreludeShell = '/bin/sh' | '/bin/bash';

/** The argv that runs the canaries, then `argv`. */
export function withCanaryPrelude(argv: readonly string[], shell: PreludeShell = '/bin/sh'): string[] {
  return [shell, '-c', SCRIPT, CANARY_ARGV0, ...argv];
}

/** The command of a wrapped argv (the argv itself when it is not wrapped). */
export function unwrapCanaryPrelude(argv: readonly string[]): string[] {
  return (argv[0] === '/bin/sh' || argv[0] === '/bin/bash') &&
    argv[1] === '-c' &&
    argv[2] === SCRIPT &&
    argv[3] === CANARY_ARGV0
    ? argv.slice(4)
    : [...argv];
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
