import { readFileSync } from 'node:fs';

/** Open files kept free for everything but client sockets: the health port's connections,
 *  Redis, calls to collect and auth, Consul, handshakes still waiting for their token. */
const RESERVED_FILES = 1000;

/** This process's soft limit of open files, from /proc/self/limits; undefined where there
 *  is no such file (not Linux) or it cannot be read. */
export function openFilesLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined;
    }
  }
  const soft = /^Max open files\s+(\d+|unlimited)\s/m.exec(text)?.[1];
  return soft === undefined || soft === 'unlimited' ? undefined : Number(soft);
}

/**
 * The sockets a push node accepts at most (WS_MAX_CONNECTIONS when set): its open-files
 * limit less a reserve. A node that ran out of files could not answer its health check,
 * so Consul took it out of routing while its sockets stayed open, and its users got nothing
 * live until they reconnected. The reserve is RESERVED_FILES, or a quarter of a small limit
 * (a 1,024 limit leaves 768 sockets).
 */
export function socketCapacity(
  configured: number | undefined,
  filesLimit: number | undefined,
): number {
  if (configured !== undefined) return configured;
  if (filesLimit === undefined) return Infinity;
  return Math.max(1, filesLimit - Math.min(RESERVED_FILES, Math.floor(filesLimit / 4)));
}
