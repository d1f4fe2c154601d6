/**
 * The size of V8's young generation in each service process. By default V8 starts each
 * of its two semi-spaces at 1 MB, grows them under allocation up to 16 MB each (on
 * 64-bit) and shrinks them again when allocation slows: the process's RSS moves by up to
 * 30 MB with the load, with no change in live objects. That swing is what failed the
 * soak's RSS check (npm run soak; README, "Operating": "Memory"). Capped at 4 MB per
 * semi-space, the young generation stays within 8 MB and RSS follows live memory, at the
 * price of more frequent (cheap) scavenges.
 */
export const SEMI_SPACE_MB = 4;

/**
 * NODE_OPTIONS for a service process: the operator's own, with the semi-space cap added
 * unless they set --max-semi-space-size themselves (theirs wins).
 */
export function serviceNodeOptions(current: string | undefined): string {
  const own = (current ?? '').trim();
  if (/(^|\s)--max-semi-space-size(=|\s|$)/.test(own)) return own;
  return [own, `--max-semi-space-size=${SEMI_SPACE_MB}`].filter(Boolean).join(' ');
}
