import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { claimStore } from '../../src/launcher/cluster-exclusivity.js';

// A claim held by a running launcher is refused: test/e2e/launcher.test.ts starts one.
const dir = mkdtempSync(join(tmpdir(), 'claim-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the launcher claim on a SQLite store', () => {
  it('is a file beside the store with the pid, created with its folder and gone at release', () => {
    const store = join(dir, 'new', 'messages.sqlite');
    const release = claimStore(store);
    expect(readFileSync(`${store}.launcher-pid`, 'utf8')).toBe(`${process.pid}\n`);
    release();
    expect(existsSync(`${store}.launcher-pid`)).toBe(false);
    release(); // twice is harmless
  });

  it('takes over a claim left by a launcher that was killed, or whose pid is now another program', () => {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    for (const holder of [String(dead), String(process.pid), 'garbage', '']) {
      const store = join(dir, `left-${holder || 'empty'}.sqlite`);
      writeFileSync(`${store}.launcher-pid`, `${holder}\n`);
      const release = claimStore(store);
      expect(readFileSync(`${store}.launcher-pid`, 'utf8')).toBe(`${process.pid}\n`);
      release();
    }
  });

  it('leaves a claim that is not its own at release', () => {
    const store = join(dir, 'taken-over.sqlite');
    const release = claimStore(store);
    writeFileSync(`${store}.launcher-pid`, '12345\n');
    release();
    expect(readFileSync(`${store}.launcher-pid`, 'utf8')).toBe('12345\n');
  });
});
