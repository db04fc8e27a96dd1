import { Option, type Command } from 'commander';
import { OCI_ENGINES, probeEngine, type OciEngine } from '../../backends/oci-engine.js';
import { AgentcellError } from '../../errors.js';
import {
  buildImage,
  buildRootfs,
  imageBuildPlan,
  listImages,
  removeImage,
  rootfsCommand,
} from '../../images/cell-image.js';
import { agentcellPaths } from '../../paths.js';
import { note, print, printJson, type DryRunFlag, type JsonFlag } from '../output.js';

type BuildFlags = JsonFlag &
  DryRunFlag & {
    from?: string;
    rootfs?: string;
    tag?: string;
    engine?: OciEngine;
    mirror?: string;
    suite?: string;
    verbose?: boolean;
  };

/** The engine asked for, or the first that answers (podman, then docker). */
function chooseEngine(engine: OciEngine | undefined): OciEngine {
  if (engine) return engine;
  for (const candidate of OCI_ENGINES) if (probeEngine(candidate).available) return candidate;
  throw new AgentcellError('BACKEND_UNAVAILABLE', 'neither podman nor docker answers here (run agentcell doctor)');
}

async function build(flags: BuildFlags): Promise<void> {
  if (!flags.from && !flags.rootfs)
    throw new AgentcellError('USAGE', 'image build needs --from DIR|CONTAINERFILE (an OCI image) or --rootfs DIR');
  const paths = agentcellPaths();
  const result: Record<string, unknown> = {};
  if (flags.rootfs) {
    const spec = {
      dir: flags.rootfs,
      ...(flags.mirror ? { mirror: flags.mirror } : {}),
      ...(flags.suite ? { suite: flags.suite } : {}),
      verbose: flags.verbose === true,
    };
    if (flags.dryRun) result['rootfs'] = { dir: flags.rootfs, command: rootfsCommand(spec) };
    else {
      const started = Date.now();
      note(
        `agentcell: building a ${flags.suite ?? 'bookworm'} rootfs in ${flags.rootfs} (debootstrap, a few minutes${flags.verbose ? '' : '; --verbose shows its output'})…`,
      );
      result['rootfs'] = { dir: buildRootfs(spec) };
      note(`agentcell: rootfs built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  }
  const from = flags.from ?? (flags.rootfs && (flags.engine || flags.tag) ? flags.rootfs : undefined);
  if (from) {
    const request = {
      from,
      engine: chooseEngine(flags.engine),
      stateDir: paths.state,
      ...(flags.tag ? { tag: flags.tag } : {}),
      progress: (line: string) => note(`agentcell: ${line}`),
      verbose: flags.verbose === true,
    };
    result['image'] = flags.dryRun ? { engine: request.engine, ...imageBuildPlan(request) } : await buildImage(request);
  }
  if (flags.json) printJson(flags.dryRun ? { dryRun: true, ...result } : result);
  else {
    const image = result['image'] as
      { tag: string; digest?: string; engine: string; commands?: string[][] } | undefined;
    if (flags.dryRun) {
      const rootfs = result['rootfs'] as { command: string[] } | undefined;
      if (rootfs) print(rootfs.command.join(' '));
      for (const c of image?.commands ?? []) print(c.join(' '));
      print('(dry run: nothing was built)');
    } else {
      if (flags.rootfs) print(`rootfs ${flags.rootfs} (use it with cell.rootfs = "${flags.rootfs}" on bwrap)`);
      if (image) print(`${image.engine} ${image.tag} ${image.digest ?? ''}`);
    }
  }
}

export function registerImageCommands(program: Command): void {
  const image = program.command('image').description('rootfs and OCI images for cells');
  image
    .command('build')
    .description('build a cell image (imported from a rootfs dir or built from a Containerfile) or a directory rootfs')
    .option('--from <dir|containerfile>', 'rootfs directory to import, or Containerfile to build')
    .option(
      '--rootfs <dir>',
      'make a directory rootfs here with debootstrap (for bwrap; with --engine/--tag also imported)',
    )
    .option('--tag <ref>', 'image tag (default: localhost/agentcell/cell:latest)')
    .addOption(
      new Option('--engine <engine>', 'container engine (default: the first that answers)').choices([...OCI_ENGINES]),
    )
    .option('--suite <name>', 'Debian suite for --rootfs (default: bookworm)')
    .option('--mirror <url>', 'Debian mirror for --rootfs (default: http://deb.debian.org/debian)')
    .option('--verbose', 'stream the engine’s (or debootstrap’s) own output to stderr')
    .option('--dry-run', 'print the commands and build nothing')
    .option('--json', 'machine-readable output')
    .action(build);
  image
    .command('list')
    .description('images agentcell built, with their digests and whether the engine still has them')
    .option('--json', 'machine-readable output')
    .action((flags: JsonFlag) => {
      const images = listImages(agentcellPaths().state);
      if (flags.json) printJson(images);
      else for (const i of images) print(`${i.engine}\t${i.tag}\t${i.digest}\t${i.present ? 'present' : 'missing'}`);
    });
  image
    .command('rm')
    .description('remove an image agentcell built')
    .argument('<tag>')
    .addOption(new Option('--engine <engine>', 'only from this engine').choices([...OCI_ENGINES]))
    .option('--dry-run', 'print the engine commands and remove nothing')
    .option('--json', 'machine-readable output')
    .action((tag: string, flags: JsonFlag & DryRunFlag & { engine?: OciEngine }) => {
      const dryRun = flags.dryRun === true;
      const { removed, commands } = removeImage(agentcellPaths().state, tag, flags.engine, { dryRun });
      if (flags.json) printJson(dryRun ? { dryRun, removed, commands } : removed);
      else if (dryRun) {
        for (const c of commands) print(c.join(' '));
        print('(dry run: nothing was removed)');
      } else for (const r of removed) print(`removed ${r.engine} ${r.tag}`);
    });
}
