import { waitFor } from '../../src/launcher/child.js';

/** A counter of a service's data-path stage, as its /metrics shows it
 *  (push_messages_total{stage}). */
export async function stageCount(serviceUrl: string, stage: string): Promise<number> {
  const text = await (await fetch(`${serviceUrl}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith('push_messages_total') && l.includes(`stage="${stage}"`));
  return Number(line?.split(' ').at(-1) ?? 0);
}

/**
 * Waits until a stage's counter stops moving for `quietMs`: how a test sees that nothing
 * is scheduled any more for the messages it sent (they wait for an event).
 */
export async function waitForQuiet(
  serviceUrl: string,
  stage: string,
  quietMs: number,
  timeoutMs = 30_000,
): Promise<void> {
  let last = await stageCount(serviceUrl, stage);
  let quietSince = Date.now();
  await waitFor(
    `${stage} to stay at one count for ${quietMs} ms`,
    async () => {
      const now = await stageCount(serviceUrl, stage);
      if (now !== last) [last, quietSince] = [now, Date.now()];
      return Date.now() - quietSince > quietMs;
    },
    timeoutMs,
  );
}
