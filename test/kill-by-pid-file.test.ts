import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { killByPidFile } from '../src/backends/kill-by-pid-file.js';

/**
 * A passed bound kills a podman cell by the pid the engine wrote: only a process in a pid
 * namespace of its own (a container's first process) is killed, so a stale file whose pid
 * the host reused, or a missing one, kills nothing.
 */
describe('killing a cell by its pid file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'agentcell-pidfile-'));
  const pidFile = join(dir, 'cell.pid');
  after(() => rmSync(dir, { recursive: true, force: true }));

  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const exited = (child: ReturnType<typeof spawn>): Promise<void> =>
    new Promise((resolve) =>
      child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve()),
    );

  it('kills the first process of another pid namespace, and the namespace with it', async () => {
    // unshare forks the namespace's first process, which starts a second one that outlives it unless the namespace dies.
    const holder = spawn('unshare', ['--user', '--map-root-user', '--pid', '--fork', 'sh', '-c', 'sleep 300 & wait'], {
      stdio: 'ignore',
    });
    try {
      let first: number | undefined;
      let inner: number | undefined;
      for (let i = 0; i < 200 && inner === undefined; i++) {
        await new Promise((resolve) => setTimeout(resolve, 25));
        first = Number(spawnSync('pgrep', ['-P', String(holder.pid)], { encoding: 'utf8' }).stdout.trim()) || undefined;
        if (first)
          inner = Number(spawnSync('pgrep', ['-P', String(first)], { encoding: 'utf8' }).stdout.trim()) || undefined;
      }
      assert.ok(first !== undefined && inner !== undefined, 'the namespace started');
      writeFileSync(pidFile, `${first}\n`);
      assert.equal(killByPidFile(pidFile), true);
      await exited(holder);
      for (let i = 0; i < 100 && alive(inner); i++) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(alive(inner), false, 'the rest of the namespace died with its first process');
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('kills nothing in agentcell’s own pid namespace (a reused pid), nor for a missing or garbled file', async () => {
    const bystander = spawn('sleep', ['300'], { stdio: 'ignore' });
    try {
      writeFileSync(pidFile, `${bystander.pid}\n`);
      assert.equal(killByPidFile(pidFile), false);
      writeFileSync(pidFile, 'not a pid');
      assert.equal(killByPidFile(pidFile), false);
      rmSync(pidFile);
      assert.equal(killByPidFile(pidFile), false);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.ok(bystander.pid !== undefined && alive(bystander.pid), 'the host process lives');
    } finally {
      bystander.kill('SIGKILL');
      await exited(bystander);
    }
  });
});
