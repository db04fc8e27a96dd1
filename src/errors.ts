/** Stable error codes; scripts match on these, so never rename one. */
export type ErrorCode =
  | 'USAGE'
  | 'POLICY_INVALID'
  | 'POLICY_NOT_FOUND'
  | 'MODE_REFUSED'
  | 'BREAKGLASS_ACK_REQUIRED'
  | 'NOT_AVAILABLE_YET'
  | 'BACKEND_UNAVAILABLE'
  | 'WORKSPACE_INVALID'
  | 'FILE_EXISTS'
  | 'CELL_NOT_FOUND'
  | 'CELL_CONFLICT'
  | 'CELL_LOCKED'
  | 'RECEIPT_INVALID'
  | 'RECEIPT_NOT_FOUND'
  | 'SIGNING_KEY_INVALID'
  | 'ACCEPT_REFUSED'
  | 'ACCEPT_CONFLICT'
  | 'ACCEPT_INTERRUPTED'
  | 'SPY_LOG_NOT_FOUND'
  | 'EGRESS_LOG_INVALID'
  | 'SPY_LOG_INVALID'
  | 'CELL_NOT_RUNNING'
  | 'RELOAD_REFUSED'
  | 'PATH_UNUSABLE'
  | 'STATE_CORRUPT'
  | 'SESSION_NOT_FOUND'
  | 'SESSION_INVALID'
  | 'SESSION_NOT_RUNNING'
  | 'PTY_UNAVAILABLE'
  | 'ENFORCEMENT_FAILED'
  | 'EVIDENCE_INVALID'
  | 'LAYER_TAMPERED'
  | 'PUBLISH_REFUSED'
  | 'INTERNAL';

/** agentcell's own failures: 2 for usage and policy, 3 for host or backend not ready. */
const EXIT_CODES: Record<ErrorCode, number> = {
  USAGE: 2,
  POLICY_INVALID: 2,
  POLICY_NOT_FOUND: 2,
  MODE_REFUSED: 2,
  BREAKGLASS_ACK_REQUIRED: 2,
  NOT_AVAILABLE_YET: 2,
  WORKSPACE_INVALID: 2,
  FILE_EXISTS: 2,
  CELL_NOT_FOUND: 2,
  CELL_CONFLICT: 2,
  CELL_LOCKED: 3,
  RECEIPT_INVALID: 2,
  RECEIPT_NOT_FOUND: 2,
  SIGNING_KEY_INVALID: 3,
  ACCEPT_REFUSED: 2,
  ACCEPT_CONFLICT: 2,
  ACCEPT_INTERRUPTED: 3,
  SPY_LOG_NOT_FOUND: 2,
  EGRESS_LOG_INVALID: 2,
  SPY_LOG_INVALID: 2,
  CELL_NOT_RUNNING: 2,
  RELOAD_REFUSED: 2,
  BACKEND_UNAVAILABLE: 3,
  PATH_UNUSABLE: 3,
  /** A state file agentcell wrote no longer parses: the host's state, not a usage error. */
  STATE_CORRUPT: 3,
  SESSION_NOT_FOUND: 2,
  SESSION_INVALID: 2,
  SESSION_NOT_RUNNING: 2,
  PTY_UNAVAILABLE: 3,
  ENFORCEMENT_FAILED: 3,
  EVIDENCE_INVALID: 2,
  LAYER_TAMPERED: 3,
  PUBLISH_REFUSED: 2,
  INTERNAL: 3,
};

export class AgentcellError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AgentcellError';
    this.code = code;
    this.exitCode = EXIT_CODES[code];
  }

  toJSON(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/**
 * A file system error on a named path (ENOTDIR, EACCES, EROFS, ENOSPC, …) is the host's
 * state, not a bug in agentcell: it becomes PATH_UNUSABLE (exit 3) naming the path.
 */
export function pathErrorOf(error: unknown, hint = ''): AgentcellError | undefined {
  if (!(error instanceof Error)) return undefined;
  const { code, path, syscall } = error as NodeJS.ErrnoException;
  if (typeof code !== 'string' || !/^E[A-Z]+$/.test(code) || typeof path !== 'string') return undefined;
  return new AgentcellError('PATH_UNUSABLE', `cannot use ${path} (${syscall ?? 'access'}: ${code})${hint}`, {
    cause: error,
  });
}
