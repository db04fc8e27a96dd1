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
  '**/.mozilla',
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
  const byName: string[] = [];
  const byPath: string[] = [];
  const inNamedDir: { dir: string; name: RegExp | undefined }[] = [];
  const namesByDir = new Map<string, string[]>();
  for (const glob of globs) {
    const named = IN_NAMED_DIR.exec(glob);
    if (named) {
      const dir = fold(named[1]!.slice(0, -1));
      namesByDir.set(dir, [...(namesByDir.get(dir) ?? []), named[2]!]);
    } else (glob.includes('/') ? byPath : byName).push(glob);
  }
  for (const [dir, names] of namesByDir) inNamedDir.push({ dir, name: oneRegExp(names, options.nocase) });
  const name = oneRegExp(byName, options.nocase);
  const path = oneRegExp(byPath, options.nocase);
  return {
    inDir(dir) {
      const folded = fold(dir);
      const here = inNamedDir
        .filter((d) => folded === d.dir || folded.endsWith(`/${d.dir}`))
        .map((d) => d.name)
        .filter((re): re is RegExp => re !== undefined);
      if (!path && here.length === 0) return name ? (entry) => name.test(entry) : () => false;
      return (entry) =>
        (name?.test(entry) ?? false) ||
        here.some((re) => re.test(entry)) ||
        (path?.test(dir ? `${dir}/${entry}` : entry) ?? false);
    },
  };
}

/** Globs as one regular expression (picomatch's, joined): one test instead of one per glob. */
function oneRegExp(globs: readonly string[], nocase: boolean): RegExp | undefined {
  if (globs.length === 0) return undefined;
  const sources = globs.map((g) => picomatch.makeRe(g, { dot: true, nocase }).source);
  return new RegExp(sources.join('|'), nocase ? 'i' : '');
}

/**
 * What a policy masks: hide patterns (the built-in ones and the policy's) without
 * regard to case, since a secret stays one whatever its name's case; expose patterns
 * exactly as written, so un-hiding is never wider than what the user named.
 */
export function secretMatcher(hide: readonly string[], expose: readonly string[]): GlobSet {
  const hidden = compileGlobs(hide, { nocase: true });
  const exposed = compileGlobs(expose, { nocase: false });
  return {
    inDir(dir) {
      const isHidden = hidden.inDir(dir);
      const isExposed = exposed.inDir(dir);
      return (entry) => isHidden(entry) && !isExposed(entry);
    },
  };
}
