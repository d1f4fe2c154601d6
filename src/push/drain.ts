import { DRAIN_ACK_WAIT_MS } from '../core/tuning.js';
import { CloseCode } from '../protocol/frames.js';
import type { AckBatcher } from './ack-batcher.js';
import type { Bindings } from './bindings.js';
import type { Connection } from './connection.js';
import type { Hub } from './hub.js';

export interface DrainOptions {
  hub: Pick<Hub<Connection>, 'userIds' | 'connections'>;
  acks: Pick<AckBatcher, 'flush'>;
  bindings: Pick<Bindings, 'unbindAll'>;
}

/**
 * The drain of a node that has left routing: nothing new arrives, so clients get up to
 * DRAIN_ACK_WAIT_MS to ack what they were pushed (and are not pushed it again once they
 * reconnect elsewhere); then their acks go to collect, their sockets are closed with
 * 1012 (reconnect at once) and their bindings removed.
 */
export async function drain({ hub, acks, bindings }: DrainOptions): Promise<void> {
  const users = [...hub.userIds()];
  const waitUntil = Date.now() + DRAIN_ACK_WAIT_MS;
  const awaitingAcks = (): boolean => [...hub.connections()].some((c) => c.awaitingAcks);
  while (awaitingAcks() && Date.now() < waitUntil) await new Promise((r) => setTimeout(r, 20));
  await acks.flush();
  for (const conn of [...hub.connections()])
    conn.socket.close(CloseCode.ServiceRestart, 'node restarting: reconnect');
  await bindings.unbindAll(users);
  await acks.flush();
}
