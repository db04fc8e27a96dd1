import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { removeTrees } from '../src/_internal/remove-trees.js';
import { inspectImage, inspectImageAsync } from '../src/backends/oci-engine.js';

/**
 * Rootless podman has answered `image inspect --format {{.Id}}` with exit 0 and no id, or failed
 * it over another image caught half written (both seen in CI on a freshly set-up machine): the
 * lookup asks again before it gives up, and never takes the empty answer for a digest. A `podman` script on PATH answers empty a set number of
 * times, then with an id, and counts how often it was asked.
 */
describe('an image id the engine leaves empty', () => {
  const dirs: string[] = [];
  after(() => removeTrees(dirs));

  /** `failure`: how the first answers fail (default: exit 0, no id). */
  const fakePodman = (empties: number, failure = 'exit 0'): { env: NodeJS.ProcessEnv; calls: () => number } => {
    const dir = mkdtempSync(join(tmpdir(), 'agentcell-fake-podman-'));
    dirs.push(dir);
    const count = join(dir, 'count');
    writeFileSync(count, '');
    writeFileSync(
      join(dir, 'podman'),
      [
        '#!/bin/sh',
        `echo x >> '${count}'`,
        `if [ "$(wc -l < '${count}')" -le ${empties} ]; then ${failure}; fi`,
        'echo 0123abcd',
        '',
      ].join('\n'),
    );
    chmodSync(join(dir, 'podman'), 0o755);
    return {
      env: { PATH: `${dir}:/usr/bin:/bin`, HOME: dir },
      calls: () => readFileSync(count, 'utf8').split('\n').filter(Boolean).length,
    };
  };

  for (const [how, inspect] of [
    ['async', inspectImageAsync],
    ['sync', async (...args: Parameters<typeof inspectImage>) => Promise.resolve(inspectImage(...args))],
  ] as const) {
    it(`${how}: asks again after an empty answer and gets the id`, async () => {
      const podman = fakePodman(4);
      assert.equal(await inspect('podman', 'localhost/x:1', podman.env), 'sha256:0123abcd');
      assert.equal(podman.calls(), 5);
    });

    it(`${how}: five empty answers are an error naming the image, never the digest 'sha256:'`, async () => {
      const podman = fakePodman(5);
      await assert.rejects(
        async () => inspect('podman', 'localhost/x:1', podman.env),
        (error: Error & { code?: string }) =>
          error.code === 'BACKEND_UNAVAILABLE' && /gave no id for image localhost\/x:1, 5 times/.test(error.message),
      );
      assert.equal(podman.calls(), 5);
    });

    it(`${how}: asks again while another image in the store is half written, then gives the engine's error`, async () => {
      // What rootless podman printed in CI while another test file built an image in the same store.
      const halfWritten =
        'Error: locating item named "manifest" for image with ID "0e3d341ed364": file does not exist (consider removing the image to resolve the issue)';
      const podman = fakePodman(2, `echo '${halfWritten}' >&2; exit 125`);
      assert.equal(await inspect('podman', 'localhost/x:1', podman.env), 'sha256:0123abcd');
      assert.equal(podman.calls(), 3);
      const stuck = fakePodman(5, `echo '${halfWritten}' >&2; exit 125`);
      await assert.rejects(
        async () => inspect('podman', 'localhost/x:1', stuck.env),
        (error: Error & { code?: string }) =>
          error.code === 'BACKEND_UNAVAILABLE' &&
          /cannot inspect image localhost\/x:1: Error: locating item/.test(error.message),
      );
      assert.equal(stuck.calls(), 5);
    });
  }
});

/**
 * An engine whose store another command holds locked answers `image inspect` late (seen in
 * CI, rootless podman, two test files at once): later than the 5 s a doctor probe waits, and
 * a run still gets its answer.
 */
describe('an engine slow to answer image inspect', () => {
  let dir: string;
  after(() => removeTrees([dir]));

  it('sync and async: an answer 6 s late is the id, not an error', async () => {
    dir = mkdtempSync(join(tmpdir(), 'agentcell-slow-podman-'));
    writeFileSync(join(dir, 'podman'), '#!/bin/sh\nsleep 6\necho 0123abcd\n');
    chmodSync(join(dir, 'podman'), 0o755);
    const env = { PATH: `${dir}:/usr/bin:/bin`, HOME: dir };
    // Both at once: the async one's engine runs while the sync one blocks.
    const late = inspectImageAsync('podman', 'localhost/x:1', env);
    assert.equal(inspectImage('podman', 'localhost/x:1', env), 'sha256:0123abcd');
    assert.equal(await late, 'sha256:0123abcd');
  });
});
