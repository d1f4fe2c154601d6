import { describe, expect, it } from 'vitest';
import { SEMI_SPACE_MB, serviceNodeOptions } from '../../src/launcher/node-options.js';

describe('serviceNodeOptions', () => {
  const cap = `--max-semi-space-size=${SEMI_SPACE_MB}`;

  it('caps the young generation when nothing is set', () => {
    expect(serviceNodeOptions(undefined)).toBe(cap);
    expect(serviceNodeOptions('  ')).toBe(cap);
  });

  it("keeps the operator's options and adds the cap", () => {
    expect(serviceNodeOptions('--enable-source-maps')).toBe(`--enable-source-maps ${cap}`);
  });

  it("leaves the operator's own semi-space size alone", () => {
    for (const own of ['--max-semi-space-size=16', '--enable-source-maps --max-semi-space-size 8'])
      expect(serviceNodeOptions(own)).toBe(own);
    // A flag that only starts alike is not theirs.
    expect(serviceNodeOptions('--max-semi-space-sizes=1')).toBe(`--max-semi-space-sizes=1 ${cap}`);
  });
});
