import { PeerError } from './peers.js';

export interface SplitOptions<T> {
  /** Which refusals mean "this call, as a whole, can never pass" (e.g. 413). */
  splitOn: (err: PeerError) => boolean;
  /** A single item the peer refuses by itself: given up, never retried. */
  onRefused: (item: T, err: PeerError) => Promise<void> | void;
}

/**
 * Sends items in one call; when the peer refuses the call for good, sends each half on
 * its own, down to single items, so that whatever can pass does and only an item refused
 * by itself is given up. Any other error is the caller's, as `send` throws it.
 */
export async function sendSplitting<T>(
  items: readonly T[],
  send: (items: readonly T[]) => Promise<void>,
  o: SplitOptions<T>,
): Promise<void> {
  try {
    await send(items);
  } catch (err) {
    if (!(err instanceof PeerError) || !o.splitOn(err)) throw err;
    if (items.length === 1) return o.onRefused(items[0] as T, err);
    const half = Math.ceil(items.length / 2);
    await sendSplitting(items.slice(0, half), send, o);
    await sendSplitting(items.slice(half), send, o);
  }
}

/** The peer's body limit was exceeded. */
export const tooLarge = (err: PeerError): boolean => err.status === 413;
