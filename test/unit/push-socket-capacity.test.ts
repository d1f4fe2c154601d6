import { describe, expect, it } from 'vitest';
import { openFilesLimit, socketCapacity } from '../../src/push/socket-capacity.js';

const limits = (soft: string, hard = soft): string =>
  'Limit                     Soft Limit           Hard Limit           Units     \n' +
  'Max processes             95312                95312                processes \n' +
  `Max open files            ${soft.padEnd(20)} ${hard.padEnd(20)} files     \n`;

describe('socket capacity of a push node', () => {
  it('reads the soft open-files limit of /proc/self/limits', () => {
    expect(openFilesLimit(limits('20000'))).toBe(20_000);
    expect(openFilesLimit(limits('1024', '524288'))).toBe(1024);
    expect(openFilesLimit(limits('unlimited'))).toBeUndefined();
    expect(openFilesLimit('no such line')).toBeUndefined();
  });

  it('is the open-files limit less 1,000, or less a quarter of a small limit', () => {
    expect(socketCapacity(undefined, 20_000)).toBe(19_000);
    expect(socketCapacity(undefined, 1_048_576)).toBe(1_047_576);
    expect(socketCapacity(undefined, 1024)).toBe(768);
  });

  it('is WS_MAX_CONNECTIONS when set, and no limit where the open-files limit is unknown', () => {
    expect(socketCapacity(500, 20_000)).toBe(500);
    expect(socketCapacity(undefined, undefined)).toBe(Infinity);
  });

  it('reads this process’s own limit on Linux', () => {
    if (process.platform !== 'linux') {
      console.log('skipped: /proc/self/limits exists on Linux only');
      return;
    }
    expect(openFilesLimit()).toBeGreaterThan(0);
  });
});
