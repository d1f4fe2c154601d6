import type { MessageStore } from './message-store.js';
import { MongoStore } from './mongo-store.js';
import { SqliteStore } from './sqlite-store.js';

export interface CreateStoreOptions {
  mongodbUrl?: string;
  mongodbDb: string;
  /** The SQLite file, used when no MongoDB URL is given. */
  sqlitePath: string;
  ackedRetentionMs: number;
  log: {
    warn(obj: object, msg: string): void;
    info(obj: object, msg: string): void;
  };
}

/**
 * MongoDB when a URL is configured (replicated; any number of collect instances share it);
 * otherwise SQLite in one file, for a single node: every collect instance must open the same
 * file, so they must run on the same machine.
 */
export async function createStore(opts: CreateStoreOptions): Promise<MessageStore> {
  if (opts.mongodbUrl) {
    const store = await MongoStore.connect(opts.mongodbUrl, opts.mongodbDb, {
      ackedRetentionMs: opts.ackedRetentionMs,
      log: opts.log,
    });
    // The URL may carry credentials: log only the database.
    opts.log.info({ store: store.kind, db: opts.mongodbDb }, 'message store: MongoDB');
    return store;
  }
  const store = SqliteStore.open({
    path: opts.sqlitePath,
    ackedRetentionMs: opts.ackedRetentionMs,
    log: opts.log,
  });
  opts.log.info(
    { store: store.kind, path: opts.sqlitePath },
    'message store: SQLite (MONGODB_URL is not set); collect instances must share this file',
  );
  return store;
}
