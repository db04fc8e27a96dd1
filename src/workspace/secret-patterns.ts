import picomatch from 'picomatch';

/** Data formats a `*credentials*` or `secrets.*` file is written in (source code of the same name is not masked). */
const DATA = '{json,toml,yml,yaml,xml,ini,conf,cfg,txt,csv,properties,env,db}';

/**
 * Secret-looking names masked in every cell unless the policy exposes them, matched
 * without regard to case (`.ENV`, `ID_RSA`, `Server.PEM`). A pattern without a slash
 * matches a name at any depth; `DIR/NAME` after a leading `**` matches NAME in a
 * directory DIR at any depth (the credential files of tools that live in `$HOME`, for a
 * workspace that is or holds a home).
 */
export const BUILT_IN_HIDE: readonly string[] = [
  // Environment files
  '.env',
  '.env.*',
  '*.env',
  '.envrc',
  // Private keys, keystores and certificates with keys
  '*.pem',
  '*.key',
  '*.p8',
  '*.p12',
  '*.pfx',
  '*.pkcs12',
  '*.jks',
  '*.keystore',
  '*.ppk',
  '*.asc',
  '*.ovpn',
  '*.kdbx',
  '*.keychain',
  '*.keychain-db',
  'id_rsa*',
  'id_dsa*',
  'id_ecdsa*',
  'id_ed25519*',
  '*_rsa',
  '*_dsa',
  '*_ecdsa',
  '*_ed25519',
  'ssh_host_*',
  'secring.*',
  'private-keys-v1.d',
  // Credential stores by name
  `*credentials`,
  `*credentials*.${DATA}`,
  `secrets.${DATA}`,
  `secrets.*.{json,toml,yml,yaml,env}`,
  '*service-account*.json',
  '*serviceaccount*.json',
  'gha-creds-*.json',
  '*accessKeys*.csv',
  '*.tfstate',
  '*.tfstate.*',
  '*.tfvars',
  '*.tfvars.json',
  '.terraformrc',
  'terraform.rc',
  'kubeconfig',
  '*.kubeconfig',
  '.htpasswd',
  '.pgpass',
  '.my.cnf',
  '.vault-token',
  '.netrc',
  '_netrc',
  '.authinfo',
  '.authinfo.gpg',
  '.git-credentials',
  '.gitcookies',
  '.npmrc',
  '.yarnrc',
  '.yarnrc.yml',
  '.pypirc',
  '.dockercfg',
  '.boto',
  '.s3cfg',
  '.claude.json',
  '.*_history',
  // Credential directories of the major tools
  '.ssh',
  '.gnupg',
  '.password-store',
  '.aws',
  '.azure',
  '.oci',
  '.kube',
  '.docker',
  '**/.config/gcloud',
  '**/.config/gh',
  '**/.config/glab-cli',
  '**/.config/hub',
  '**/.config/github-copilot',
  '**/.config/doctl',
  '**/.config/containers/auth.json',
  '**/.config/pnpm/rc',
  '**/.config/pip/pip.conf',
  '**/.pip/pip.conf',
  '**/pypoetry/auth.toml',
  '**/.composer/auth.json',
  '**/.config/composer/auth.json',
  '**/.m2/settings.xml',
  '**/.m2/settings-security.xml',
  '**/.gradle/gradle.properties',
  '**/.nuget/NuGet/NuGet.Config',
  '**/.config/NuGet/NuGet.Config',
  '**/.circleci/cli.yml',
  '**/.local/share/keyrings',
  '.mozilla',
  '**/.config/google-chrome',
  '**/.config/chromium',
  '**/.config/BraveSoftware',
  // Agents' own logins in a home
  '**/.codex/auth.json',
  '**/.gemini/oauth_creds.json',
  '**/.copilot/config.json',
  '**/.local/share/opencode/auth.json',
];

/** Whether a name in a directory matches; made once per directory, called once per entry. */
export type NameMatcher = (name: string) => boolean;

/** Globs compiled for a walk that visits each directory once. */
export interface GlobSet {
  /** The matcher for the entries of one directory (workspace-relative, '' for the root). */
  inDir(dir: string): NameMatcher;
}

/** Literal directories, then a name glob: matched by a suffix test per directory, not a glob per entry. */
const IN_NAMED_DIR = /^\*\*\/((?:[^*?[\]{}()!+@/\\]+\/)+)([^/]+)$/;

/**
 * A .gitignore-style glob set: a glob without a slash matches a name at any depth, one
 * with a slash matches the path from the workspace root, and `DIR/NAME` after a leading
 * `**` a NAME in a directory DIR at any depth. The name globs run as one regular
 * expression (one test per entry, however many globs), the DIR/NAME ones only in
 * directories named DIR.
 */
export function compileGlobs(globs: readonly string[], options: { nocase: boolean }): GlobSet {
  const fold = (s: string): string => (options.nocase ? s.toLowerCase() : s);
  // Compiled on first use: a scan whose directories are all unchanged since its cache needs none.
  let compiled:
    { name?: NameMatcher; path?: RegExp; inNamedDir: Map<string, { dir: string; name: NameMatcher }[]> } | undefined;
  const compile = (): NonNullable<typeof compiled> => {
    const byName: string[] = [];
    const byPath: string[] = [];
    const namesByDir = new Map<string, string[]>();
    for (const glob of globs) {
      const named = IN_NAMED_DIR.exec(glob);
      if (named) {
        const dir = fold(named[1]!.slice(0, -1));
        namesByDir.set(dir, [...(namesByDir.get(dir) ?? []), named[2]!]);
      } else (glob.includes('/') ? byPath : byName).push(glob);
    }
    // By the directory's last name: a directory's lookup is one map get, not a test per pattern.
    const inNamedDir = new Map<string, { dir: string; name: NameMatcher }[]>();
    for (const [dir, names] of namesByDir) {
      const last = dir.slice(dir.lastIndexOf('/') + 1);
      inNamedDir.set(last, [...(inNamedDir.get(last) ?? []), { dir, name: nameMatcher(names, options.nocase) }]);
    }
    const result: NonNullable<typeof compiled> = { inNamedDir };
    if (byName.length > 0) result.name = nameMatcher(byName, options.nocase);
    const path = oneRegExp(byPath, options.nocase);
    if (path) result.path = path;
    return result;
  };
  return {
    inDir(dir) {
      compiled ??= compile();
      const { name, path, inNamedDir } = compiled;
      const folded = fold(dir);
      const here = (inNamedDir.get(folded.slice(folded.lastIndexOf('/') + 1)) ?? [])
        .filter((d) => folded === d.dir || folded.endsWith(`/${d.dir}`))
        .map((d) => d.name);
      if (!path && here.length === 0) return name ?? (() => false);
      return (entry) =>
        (name?.(entry) ?? false) ||
        here.some((matches) => matches(entry)) ||
        (path?.test(dir ? `${dir}/${entry}` : entry) ?? false);
    },
  };
}

const GLOB_CHARS = /[*?[\]{}()!+@\\]/;
const SUFFIX_GLOB = /^\*[^*?[\]{}()!+@\\]+$/;
const PREFIX_GLOB = /^[^*?[\]{}()!+@\\]+\*$/;

/**
 * Name globs as string tests where they are plain names, `*SUFFIX` or `PREFIX*` (most
 * secret patterns), and one regular expression for the rest: a large alternation tests
 * each name once per `*`-led branch, these test it in a set lookup and a few compares.
 */
function nameMatcher(globs: readonly string[], nocase: boolean): NameMatcher {
  const exact = new Set<string>();
  /** `*.EXT` with one dot: a set lookup of the name's extension. */
  const extensions = new Set<string>();
  const suffixes: string[] = [];
  const prefixes: string[] = [];
  const rest: string[] = [];
  for (const glob of globs) {
    const folded = nocase ? glob.toLowerCase() : glob;
    if (!GLOB_CHARS.test(glob)) exact.add(folded);
    else if (SUFFIX_GLOB.test(glob) && folded.lastIndexOf('.') === 1) extensions.add(folded.slice(1));
    else if (SUFFIX_GLOB.test(glob)) suffixes.push(folded.slice(1));
    else if (PREFIX_GLOB.test(glob)) prefixes.push(folded.slice(0, -1));
    else rest.push(glob);
  }
  // Each other glob runs only on names holding its longest literal part (`credentials`, `secrets.`).
  const others = rest.map((glob) => ({
    literal: longestLiteral(nocase ? glob.toLowerCase() : glob),
    re: oneRegExp([glob], nocase)!,
  }));
  return (name) => {
    const folded = nocase ? name.toLowerCase() : name;
    if (exact.has(folded)) return true;
    const dot = folded.lastIndexOf('.');
    if (dot !== -1 && extensions.has(folded.slice(dot))) return true;
    for (const s of suffixes) if (folded.endsWith(s)) return true;
    for (const p of prefixes) if (folded.startsWith(p)) return true;
    for (const o of others) if (folded.includes(o.literal) && o.re.test(name)) return true;
    return false;
  };
}

/** The longest run of plain characters outside braces: every name the glob matches contains it. */
function longestLiteral(glob: string): string {
  return glob
    .replace(/\{[^}]*\}/g, '*')
    .split(/[*?[\]{}()!+@\\]+/)
    .reduce((a, b) => (b.length > a.length ? b : a), '');
}

/** Globs as one regular expression: one test per entry instead of one per glob. */
function oneRegExp(globs: readonly string[], nocase: boolean): RegExp | undefined {
  if (globs.length === 0) return undefined;
  return new RegExp(`^(?:${globs.map((g) => globSource(g, nocase)).join('|')})$`, nocase ? 'i' : '');
}

/** Literals, `*`, `?` and flat `{a,b}`: what nearly every secret pattern is, compiled without a glob parser. */
const SIMPLE_GLOB = /^(?:[^*?[\]{}()!+@\\]|\*(?!\*)|\?|\{[^{}/*?[\]\\]*\})+$/;

/**
 * A regular expression source for one glob, unanchored. Simple globs are translated
 * here (`*` and `?` never match `/`, dotfiles included): parsing ~130 globs with
 * picomatch costs milliseconds on every start; the rest go through picomatch.
 */
function globSource(glob: string, nocase: boolean): string {
  if (!SIMPLE_GLOB.test(glob)) return picomatch.makeRe(glob, { dot: true, nocase }).source;
  return glob.replace(/\{([^{}]*)\}|\*|\?|[.+^$|()[\]\\]/g, (token, alternatives: string | undefined) => {
    if (alternatives !== undefined) return `(?:${alternatives.split(',').map(escapeRegExp).join('|')})`;
    if (token === '*') return '[^/]*';
    if (token === '?') return '[^/]';
    return `\\${token}`;
  });
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * What a policy masks: hide patterns (the built-in ones and the policy's) without
 * regard to case, since a secret stays one whatever its name's case; expose patterns
 * exactly as written, so un-hiding is never wider than what the user named.
 */
export function secretMatcher(hide: readonly string[], expose: readonly string[]): GlobSet {
  const hidden = compileGlobs(hide, { nocase: true });
  if (expose.length === 0) return hidden;
  const exposed = compileGlobs(expose, { nocase: false });
  return {
    inDir(dir) {
      const isHidden = hidden.inDir(dir);
      const isExposed = exposed.inDir(dir);
      return (entry) => isHidden(entry) && !isExposed(entry);
    },
  };
}
