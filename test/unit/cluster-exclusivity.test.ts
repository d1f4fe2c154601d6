import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/launcher/binaries.js';
import { claimStore } from '../../src/launcher/cluster-exclusivity.js';

// test/e2e/launcher.test.ts has a running launcher refuse a second one on its store.
const dir = mkdtempSync(join(tmpdir(), 'claim-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Field 22 of /proc/<pid>/stat: when the process started. */
const startTimeOf = (pid: number): string => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
};

describe('the launcher claim on a SQLite store', () => {
  it('is a file beside the store naming this process, created with its folder and gone at release', () => {
    const store = join(dir, 'new', 'messages.sqlite');
    const release = claimStore(store);
    expect(readFileSync(`${store}.launcher-pid`, 'utf8')).toBe(
      `${process.pid} ${startTimeOf(process.pid)}\n`,
    );
    release();
    expect(existsSync(`${store}.launcher-pid`)).toBe(false);
    release(); // twice is harmless
  });

  it('takes over a claim left by a launcher that was killed, or whose pid is now another process', () => {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const reused = `${process.pid} ${Number(startTimeOf(process.pid)) - 1}`;
    for (const [name, holder] of [
      ['dead', String(dead)],
      ['reused', reused],
      ['garbage', 'garbage'],
      ['empty', ''],
    ]) {
      const store = join(dir, `left-${name}.sqlite`);
      writeFileSync(`${store}.launcher-pid`, `${holder}\n`);
      const release = claimStore(store);
      expect(readFileSync(`${store}.launcher-pid`, 'utf8'), name).toMatch(
        new RegExp(`^${process.pid} `),
      );
      release();
    }
  });

  it('says which file to remove when a claim left behind cannot be removed', () => {
    const store = join(dir, 'folder-in-the-way.sqlite');
    mkdirSync(`${store}.launcher-pid`);
    expect(() => claimStore(store)).toThrow(
      `${store}.launcher-pid is left from a launcher that is gone, but cannot be removed`,
    );
  });

  it('leaves a claim that is not its own at release', () => {
    const store = join(dir, 'taken-over.sqlite');
    const release = claimStore(store);
    writeFileSync(`${store}.launcher-pid`, '12345\n');
    release();
    expect(readFileSync(`${store}.launcher-pid`, 'utf8')).toBe('12345\n');
  });

  it('goes to exactly one of six launchers claiming at the same instant, three rounds', async () => {
    for (let round = 0; round < 3; round++) {
      const store = join(dir, `race-${round}.sqlite`);
      const at = Date.now() + 2000;
      const claimers = Array.from({ length: 6 }, () =>
        spawn(
          process.execPath,
          ['--import', 'tsx', 'test/support/fixtures/store-claimer.ts', store, String(at)],
          { cwd: PROJECT_ROOT, stdio: ['pipe', 'pipe', 'inherit'] },
        ),
      );
      const answers = await Promise.all(
        claimers.map(
          (c) =>
            new Promise<string>((resolve) => {
              let out = '';
              c.stdout!.on('data', (chunk: Buffer) => {
                out += chunk.toString();
                if (out.includes('\n')) resolve(out.trim());
              });
              c.once('exit', () => resolve(out.trim() || 'exited'));
            }),
        ),
      );
      for (const c of claimers) c.stdin!.end();
      await Promise.all(
        claimers.map((c) =>
          c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)),
        ),
      );
      expect(answers.sort(), `round ${round}`).toEqual([
        'claimed',
        'refused',
        'refused',
        'refused',
        'refused',
        'refused',
      ]);
      expect(existsSync(`${store}.launcher-pid`)).toBe(false);
    }
  }, 60_000);
});
