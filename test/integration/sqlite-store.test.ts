import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MessageStore } from '../../src/store/message-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { messageStoreContract } from '../store/message-store.contract.js';

{
  const dirs = new Map<MessageStore, string>();
  messageStoreContract(
    'sqlite file',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'sqlite-store-'));
      const store = SqliteStore.open({ path: join(dir, 'messages.sqlite') });
      dirs.set(store, dir);
      return store;
    },
    async (store) => {
      await store.close();
      const dir = dirs.get(store);
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  );
}

messageStoreContract('sqlite :memory:', async () => SqliteStore.open({ path: ':memory:' }));
