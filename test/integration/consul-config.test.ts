import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findBinary, PROJECT_ROOT } from '../../src/launcher/binaries.js';

describe('consul.d', () => {
  it('passes `consul validate` for the development agent and the backing services', () => {
    const out = execFileSync(
      findBinary('consul'),
      ['validate', join(PROJECT_ROOT, 'consul.d/dev'), join(PROJECT_ROOT, 'consul.d/services')],
      {
        encoding: 'utf8',
      },
    );
    expect(out).toContain('Configuration is valid');
  });
});
