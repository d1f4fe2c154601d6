import type { MessageStore } from './message-store.js';
import { MemoryStore } from './memory-store.js';
import { MongoStore } from './mongo-store.js';

export interface CreateStoreOptions {
  mongodbUrl?: string;
  mongodbDb: string;
  log: {
    warn(obj: object, msg: string): void;
    info(obj: object, msg: string): void;
  };
}

/** MongoDB when a URL is configured; otherwise memory, which is fine only for development. */
export async function createStore(opts: CreateStoreOptions): Promise<MessageStore> {
  if (opts.mongodbUrl) {
    const store = await MongoStore.connect(opts.mongodbUrl, opts.mongodbDb);
    // The URL may carry credentials: log only the database.
    opts.log.info({ store: store.kind, db: opts.mongodbDb }, 'message store: MongoDB');
    return store;
  }
  opts.log.warn(
    { store: 'memory' },
    "MONGODB_URL is not set: messages live only in this process's memory and are LOST ON " +
      'RESTART, and other processes cannot see them. Set MONGODB_URL for durable storage.',
  );
  return new MemoryStore();
}
