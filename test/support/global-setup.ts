import { execFileSync } from 'node:child_process';
import { PROJECT_ROOT } from '../../src/launcher/binaries.js';

/**
 * Tests start real service processes from dist/. `npm test` builds first (pretest);
 * a bare `npx vitest` builds here, so it never runs stale code.
 */
export default function setup(): void {
  if (process.env.npm_lifecycle_event === 'test') return;
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], {
    cwd: PROJECT_ROOT,
    stdio: 'inherit',
  });
  execFileSync('node', ['scripts/copy-assets.mjs'], { cwd: PROJECT_ROOT, stdio: 'inherit' });
}
