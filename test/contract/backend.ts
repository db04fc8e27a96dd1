import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Backend, CellSpec, RunOutcome } from '../../src/backends/backend.js';
import { createBackend, resolveCellImage } from '../../src/backends/select-backend.js';
import { removeTrees } from '../../src/_internal/remove-trees.js';
import { prepareBackend, TEST_BACKENDS, TEST_IMAGE, type TestBackend } from '../backends-under-test.js';

/**
 * What every Backend must do, checked on the Backend interface itself (not through the
 * CLI), as one suite each backend's file runs: `plan` is pure and deterministic, the
 * command's exit code comes back, a timeout ends the run with 124, a signal that ends
 * the command is reported as 128+N, masks hide, `network: none` has no interface but
 * loopback, and no process outlives the run.
 */
export function backendContract(name: TestBackend): void {
  const skip = TEST_BACKENDS.includes(name) ? false : `${name} is not in AGENTCELL_TEST_BACKENDS`;
  describe(`Backend contract: ${name}`, { skip }, () => {
    let root: string;
    let backend: Backend;
    let base: CellSpec;

    before(async () => {
      prepareBackend(name);
      root = mkdtempSync(join(tmpdir(), 'agentcell-contract-'));
      const workspace = join(root, 'work');
      mkdirSync(workspace);
      writeFileSync(join(workspace, 'visible.txt'), 'visible\n');
      writeFileSync(join(workspace, '.env'), 'TOKEN=leak-me\n');
      // The cell's uid is not the host's root: let it read the workspace.
      for (const dir of [root, workspace]) chmodSync(dir, 0o755);
      backend = createBackend(name, { stateDir: join(root, 'state'), hostEnv: process.env });
      const uid = process.getuid?.() ?? 1000;
      const gid = process.getgid?.() ?? 1000;
      base = {
        cell: 'contract',
        rootfs: { kind: 'host' },
        workspace: { path: workspace, mode: 'readonly' },
        masks: [{ target: join(workspace, '.env'), kind: 'file' }],
        readonlyPaths: [],
        mounts: [],
        // The caller's home path, as a run gives it (an empty tmpfs there in the cell).
        home: homedir(),
        cwd: workspace,
        argv: ['true'],
        env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: homedir() },
        identity: { uid: uid === 0 ? 1000 : uid, gid: gid === 0 ? 1000 : gid },
        network: 'none',
        limits: {},
        seccomp: true,
        tty: false,
      };
      const image = await resolveCellImage(name, TEST_IMAGE, process.env, join(root, 'state'));
      if (image) base.image = image.image;
    });
    after(() => removeTrees([root]));

    const spec = (argv: string[], more: Partial<CellSpec> = {}): CellSpec => ({ ...base, argv, ...more });
    const engine = (): string => (name === 'podman' ? 'podman' : 'docker');
    const containerExists = (container: string): boolean =>
      spawnSync(engine(), ['container', 'inspect', container], { stdio: 'ignore' }).status === 0;
    const run = (s: CellSpec): Promise<RunOutcome> => backend.run(s, backend.plan(s));
    /** Runs `sh -c SCRIPT` with its output in a host directory bound rw at /out (the run's stdio is the host's). */
    const output = async (script: string, more: Partial<CellSpec> = {}): Promise<string> => {
      const out = mkdtempSync(join(root, 'out-'));
      chmodSync(out, 0o777);
      const mounts = [{ source: out, target: '/out', mode: 'rw' as const }];
      const outcome = await run(spec(['sh', '-c', `(${script}) >/out/stdout 2>&1`], { mounts, ...more }));
      const stdout = existsSync(join(out, 'stdout')) ? readFileSync(join(out, 'stdout'), 'utf8') : '';
      assert.equal(outcome.exitCode, 0, `the probe script failed (exit ${outcome.exitCode}): ${stdout}`);
      return stdout;
    };

    it('probe says it is available here', () => {
      const probe = backend.probe();
      assert.equal(probe.available, true, `${probe.detail} ${probe.fix ?? ''}`);
    });

    it('plan is pure and deterministic: equal specs, equal plans; the spec is left as it was', () => {
      const s = spec(['sh', '-c', 'echo hi']);
      const before = structuredClone(s);
      const first = backend.plan(s);
      assert.deepEqual(backend.plan(structuredClone(s)), first);
      assert.deepEqual(s, before);
      assert.equal(first.backend, name);
    });

    it("returns the command's exit code", async () => {
      assert.equal((await run(spec(['sh', '-c', 'exit 0']))).exitCode, 0);
      assert.equal((await run(spec(['sh', '-c', 'exit 7']))).exitCode, 7);
    });

    it('ends a run that outlives its timeout with 124', async () => {
      const started = Date.now();
      // Long enough for rootless podman to have started the container (a timeout during its
      // creation is the next test's).
      const outcome = await run(spec(['sleep', '60'], { limits: { timeoutMs: 6000 } }));
      assert.equal(outcome.exitCode, 124);
      assert.equal(outcome.timedOut, true);
      assert.ok(Date.now() - started < 45_000, 'the timeout ended the run long before the command would have');
    });

    it('a timeout while the engine may still be creating the cell leaves nothing behind: the next run starts', async () => {
      // Rootless podman takes seconds to create a container: these land before, during and after.
      for (const timeoutMs of [300, 1500, 3000]) {
        const s = spec(['sleep', '60'], { limits: { timeoutMs } });
        const outcome = await run(s);
        assert.equal(outcome.exitCode, 124, `timeout ${timeoutMs} ms`);
        const next = await run(spec(['true']));
        assert.equal(next.exitCode, 0, `the run after a ${timeoutMs} ms timeout`);
        const container = backend.plan(s).container;
        if (container !== undefined) assert.equal(containerExists(container), false, `${container} was left behind`);
      }
    });

    const ociOnly = name === 'bwrap' ? 'bwrap runs no container' : false;
    it(
      'a container a killed run left under the cell’s name is removed if its label says it is the cell’s, kept if not',
      { skip: ociOnly },
      async () => {
        const s = spec(['sh', '-c', 'exit 3']);
        const container = backend.plan(s).container ?? '';
        const create = (labels: string[]): void => {
          const made = spawnSync(engine(), ['create', '--name', container, ...labels, TEST_IMAGE, 'true'], {
            encoding: 'utf8',
          });
          assert.equal(made.status, 0, made.stderr);
        };
        create(['--label', `io.agentcell.cell=${s.cell}`]);
        assert.equal((await run(s)).exitCode, 3, 'the run took the name of the cell’s own leftover');
        assert.equal(containerExists(container), false);
        // Control: a container of the same name that is not a cell's is never removed; the run fails instead.
        create(['--label', 'io.agentcell.cell=another-cell']);
        try {
          const failed = await run(s).then(
            (o) => o.exitCode,
            () => 'refused',
          );
          assert.ok(failed === 125 || failed === 'refused', `the run should fail on the taken name, got ${failed}`);
          assert.equal(containerExists(container), true, 'a container that is not the cell’s was removed');
        } finally {
          spawnSync(engine(), ['rm', '--force', container], { stdio: 'ignore' });
        }
      },
    );

    it('a stop already signalled when the run begins still kills the cell: the command never finishes', async () => {
      // A bound can pass while the engine is still starting the cell (docker's start request not yet answered).
      const attempt = async (stopped: boolean): Promise<{ exitCode: number; finished: boolean }> => {
        const out = mkdtempSync(join(root, 'out-'));
        chmodSync(out, 0o777);
        const s = spec(['sh', '-c', 'sleep 3; echo done >/out/done'], {
          mounts: [{ source: out, target: '/out', mode: 'rw' }],
        });
        const stop = new AbortController();
        if (stopped) stop.abort();
        const outcome = await backend.run(s, backend.plan(s), { stop: stop.signal });
        return { exitCode: outcome.exitCode, finished: existsSync(join(out, 'done')) };
      };
      assert.deepEqual(await attempt(false), { exitCode: 0, finished: true }, 'control: unstopped, it finishes');
      const stopped = await attempt(true);
      assert.equal(stopped.finished, false, 'the stopped cell ran its command to the end');
      assert.notEqual(stopped.exitCode, 0);
    });

    it('reports a process a signal ended as 128+N', async () => {
      // Not the command itself: OCI engines run it as the pid namespace's init, which the
      // kernel shields from signals sent inside the namespace.
      const outcome = await run(spec(['sh', '-c', "sh -c 'kill -TERM $$; sleep 5'"]));
      assert.equal(outcome.exitCode, 143);
    });

    it('hides a masked path and shows the rest of the workspace (positive control)', async () => {
      const stdout = await output('cat visible.txt; cat .env; echo "rc=$?"');
      assert.match(stdout, /^visible$/m);
      assert.doesNotMatch(stdout, /leak-me/);
      assert.match(stdout, /rc=[1-9]/);
    });

    it('network none: no interface but loopback (the host as the control)', async () => {
      const interfaces = 'tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | sort | tr "\\n" " "';
      assert.equal((await output(interfaces)).trim(), 'lo');
      const host = spawnSync('sh', ['-c', interfaces], { encoding: 'utf8' }).stdout;
      assert.notEqual(host.trim(), 'lo', 'the probe sees the host network outside a cell');
    });

    it('leaves no process behind', async () => {
      const marker = `sleep 3${String(process.pid).slice(-3)}7`;
      const alive = () => spawnSync('pgrep', ['-f', `^${marker}$`]).status === 0;
      // Control: the probe finds the process while the run holds it.
      let ended = false;
      const outcome = run(spec(['sh', '-c', `${marker} & sleep 5; exit 0`])).finally(() => (ended = true));
      let seenDuring = false;
      while (!ended && !(seenDuring = alive())) await new Promise((r) => setTimeout(r, 100));
      await outcome;
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(alive(), false, 'a background process of the cell outlived the run');
      // gVisor runs the cell's processes in its own kernel: the host never sees them.
      if (name !== 'gvisor') assert.equal(seenDuring, true, 'the probe could not see the process during the run');
    });
  });
}
