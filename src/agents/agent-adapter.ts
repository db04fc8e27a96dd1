/** The agents agentcell knows how to run; `generic` is any command (`agentcell run`). */
export const AGENT_NAMES = ['claude', 'codex', 'gemini', 'copilot', 'pi', 'opencode'] as const;
export type AgentName = (typeof AGENT_NAMES)[number];

/**
 * A provider credential the gateway adds to the agent's API calls (`inject = "proxy"`),
 * read on the host; the cell sees only a placeholder so the CLI believes it has a key.
 */
export interface AgentCredential {
  /** The secret's name in `[secrets]`. */
  secret: string;
  /** Host variables it is read from, first one set wins. */
  hostEnv: string[];
  host: string;
  header: string;
  template?: string;
  /** Variables the cell gets with a placeholder, so the CLI takes the API-key path. */
  placeholderEnv: string[];
}

/** A file written in the cell's home before a run: JSON is merged into what is there, text replaces it. */
export type SeedFile = { path: string; json: Record<string, unknown> } | { path: string; text: string };

export interface SeedContext {
  /** The workspace path, as the cell sees it (it is trusted). */
  workspace: string;
  /** The placeholder the cell holds instead of a proxy-injected secret's value. */
  placeholder: (secret: string) => string;
}

/**
 * What `agentcell login AGENT` runs in a cell, and the files in the cell's home it keeps
 * in agentcell's credential store; later runs of the agent get copies in their home.
 */
export interface AgentLogin {
  /** The login command; its first word is the agent's executable. */
  argv: string[];
  /** Hosts the login flow needs (OAuth endpoints). */
  hosts: string[];
  /** Files (relative to home) that hold the resulting credential. */
  files: string[];
}

/**
 * One agent CLI: where it comes from, what it needs on the network, how its credentials
 * reach the gateway, the native config that makes it run unattended in a cell, and its flags.
 */
export interface AgentAdapter {
  name: AgentName;
  /** The npm package that ships the CLI, and the version agentcell pins. */
  npmPackage: string;
  version: string;
  /** The executable the package installs. */
  bin: string;
  /** Provider API hosts: allowed, and inspected so `spy` shows the calls. */
  apiHosts: string[];
  /** Further hosts the CLI needs, allowed but not inspected. */
  otherHosts: string[];
  credentials: AgentCredential[];
  /** Variables that turn off telemetry, update checks and the like. */
  env: Record<string, string>;
  seed(context: SeedContext): SeedFile[];
  /** Files (relative to home) the CLI reads as the user's own instructions; the cell brief is bound there. */
  briefPaths: string[];
  /** Flags put before the user's arguments so it never stops to ask. */
  unattendedArgs: string[];
  login?: AgentLogin;
}
