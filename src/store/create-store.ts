import type { MessageStore } from './message-store.js';
import { MemoryStore } from './memory-store.js';
import { MongoStore } from './mongo-store.js';

export interface CreateStoreOptions {
  mongodbUrl?: string;
  mongodbDb: string;
  /** Without MongoDB: a file that journals the memory store so it survives a restart. */
  journalPath?: string;
  log: {
    warn(obj: object, msg: string): void;
    info(obj: object, msg: string): void;
  };
}

/**
 * MongoDB when a URL is configured; otherwise memory, which is fine only for development:
 * journaled to a file when `journalPath` is given, else lost on restart.
 */
export async function createStore(opts: CreateStoreOptions): Promise<MessageStore> {
  if (opts.mongodbUrl) {
    const store = await MongoStore.connect(opts.mongodbUrl, opts.mongodbDb);
    // The URL may carry credentials: log only the database.
    opts.log.info({ store: store.kind, db: opts.mongodbDb }, 'message store: MongoDB');
    if (opts.journalPath) {
      opts.log.warn(
        { store: store.kind, journal: opts.journalPath },
        'MEMORY_STORE_JOURNAL is ignored: MONGODB_URL is set',
      );
    }
    return store;
  }
  if (opts.journalPath) {
    const store = await MemoryStore.open({ journalPath: opts.journalPath, log: opts.log });
    opts.log.warn(
      { store: 'memory', journal: opts.journalPath, messages: store.size },
      'MONGODB_URL is not set: message store: memory, journaled to a file. Messages survive a ' +
        'restart of this process, but other processes cannot see them. Set MONGODB_URL for ' +
        'shared, replicated storage.',
    );
    return store;
  }
  opts.log.warn(
    { store: 'memory' },
    "MONGODB_URL is not set: messages live only in this process's memory and are LOST ON " +
      'RESTART, and other processes cannot see them. Set MEMORY_STORE_JOURNAL to a file to ' +
      'keep them across restarts, or MONGODB_URL for durable storage.',
  );
  return new MemoryStore();
}
