// The fallbacks a /v1/connect answer names, and the pick among them when a socket is lost.
// Imports nothing (browsers load it as is).

/** True for a ws:// or wss:// URL, the only kind a client connects to. */
export function isNodeUrl(url: unknown): url is string {
  return typeof url === 'string' && /^wss?:\/\//i.test(url);
}

/** The fallbacks of a /v1/connect answer for `url`: node URLs other than it. An older
 *  dispatch names none; anything but a node URL is left out. */
export function fallbacksOf(named: unknown, url: string): string[] {
  if (!Array.isArray(named)) return [];
  return named.filter((u: unknown): u is string => isNodeUrl(u) && u !== url);
}

/** A fallback other than the node just lost, at random, and what is left of the list
 *  without either; `url` is undefined when none is left. */
export function takeFallback(
  fallbacks: readonly string[],
  lost: string | undefined,
): { url: string | undefined; left: string[] } {
  const candidates = fallbacks.filter((u) => u !== lost);
  if (candidates.length === 0) return { url: undefined, left: [] };
  const url = candidates[Math.floor(Math.random() * candidates.length)] as string;
  return { url, left: candidates.filter((u) => u !== url) };
}
