/** The shells `agentcell completion SHELL` writes a script for. */
export const COMPLETION_SHELLS = ['bash', 'zsh', 'fish'] as const;
export type CompletionShell = (typeof COMPLETION_SHELLS)[number];

/** The line `agentcell __complete` prints when the shell should complete file names itself. */
export const FILES_DIRECTIVE = ':files';

/**
 * A shell's completion script. Each is a thin shim: it hands the words typed so far to
 * `EXE __complete --` and offers what comes back, so every shell completes the same way
 * (from the commander definitions and the cells on this machine).
 */
export function completionScript(shell: CompletionShell, exe: string): string {
  const bin = shellQuote(exe);
  switch (shell) {
    case 'bash':
      return `# agentcell completion for bash: source <(agentcell completion bash), or save it to
# /etc/bash_completion.d/agentcell (or ~/.local/share/bash-completion/completions/agentcell).
_agentcell() {
  local IFS=$'\\n' line files=0 out
  out=$(${bin} __complete -- "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) || return 0
  COMPREPLY=()
  for line in $out; do
    if [[ $line == '${FILES_DIRECTIVE}' ]]; then files=1; else COMPREPLY+=("$line"); fi
  done
  if (( files )); then COMPREPLY+=($(compgen -f -- "\${COMP_WORDS[COMP_CWORD]}")); fi
}
complete -F _agentcell agentcell
`;
    case 'zsh':
      return `#compdef agentcell
# agentcell completion for zsh: source <(agentcell completion zsh) after compinit, or save it
# as _agentcell in a directory on $fpath.
_agentcell() {
  local line
  local -a candidates
  local files=0
  for line in "\${(@f)$(${bin} __complete -- "\${(@)words[2,CURRENT]}" 2>/dev/null)}"; do
    if [[ $line == '${FILES_DIRECTIVE}' ]]; then files=1; elif [[ -n $line ]]; then candidates+=("$line"); fi
  done
  (( \${#candidates} )) && compadd -- "\${candidates[@]}"
  (( files )) && _files
  return 0
}
if (( $+functions[compdef] )); then compdef _agentcell agentcell; fi
`;
    case 'fish':
      return `# agentcell completion for fish: agentcell completion fish > ~/.config/fish/completions/agentcell.fish
function __agentcell_complete
    set -l words (commandline -opc) (commandline -ct)
    set -e words[1]
    for line in (${bin} __complete -- $words 2>/dev/null)
        if test "$line" = '${FILES_DIRECTIVE}'
            __fish_complete_path (commandline -ct)
        else
            echo $line
        end
    end
end
complete -c agentcell -f -a '(__agentcell_complete)'
`;
  }
}

function shellQuote(text: string): string {
  return /^[\w./-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}
