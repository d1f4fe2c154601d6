import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';

/**
 * An append-only file of JSON lines with group commit: what lets the memory store survive a
 * restart (SIGKILL included). The journal knows nothing of messages: it stores the lines it is
 * given, and rewrites itself from a snapshot of the caller's state when it has grown.
 */

export interface JournalOptions {
  /**
   * Rewrite the file from a snapshot once this many bytes were appended since the last
   * rewrite and the appended bytes outweigh the snapshot. Default 64 MiB.
   */
  compactMinBytes?: number;
  log?: { warn(obj: object, msg: string): void };
}

export interface JournalStats {
  /** Appends to the file (each one a batch of lines). */
  writes: number;
  /** fdatasync calls on the journal file (rewrites not included). */
  datasyncs: number;
  /** Rewrites from a snapshot after opening. */
  compactions: number;
  /** The file's size as far as this process wrote it. */
  bytes: number;
}

/** A line in the middle of the file that does not parse: not a crash mid-write, a damaged file. */
export class JournalCorruptError extends Error {
  override readonly name = 'JournalCorruptError';
  constructor(
    readonly path: string,
    readonly line: number,
    detail: string,
  ) {
    super(
      `journal ${path} is damaged at line ${line} (${detail}); ` +
        'move the file away to start with an empty store',
    );
  }
}

export interface ReadResult {
  /** Lines read, the torn one included. */
  lines: number;
  /** Whether the last line was cut short (a crash mid-write) and skipped. */
  tornTail: boolean;
}

/**
 * Calls `apply` for each line of the file in order. `apply` throws to reject a line; the last
 * line may be rejected (or not parse) without error, as a crash mid-write leaves it torn.
 * A missing file reads as empty.
 */
export async function readJournal(
  path: string,
  apply: (record: unknown) => void,
): Promise<ReadResult> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { lines: 0, tornTail: false };
    throw err;
  }
  let lineNo = 0;
  // Each line is applied once the next one is seen, so the last is known to be the last.
  let held: { text: string; no: number } | undefined;
  const applyLine = (text: string, no: number, last: boolean): boolean => {
    let record: unknown;
    try {
      record = JSON.parse(text);
      apply(record);
      return true;
    } catch (err) {
      if (last) return false;
      throw new JournalCorruptError(path, no, err instanceof Error ? err.message : String(err));
    }
  };
  // Destroying the stream closes the file, also when a damaged line stops the read.
  const input = fh.createReadStream();
  try {
    const lines = createInterface({ input, crlfDelay: Infinity });
    for await (const text of lines) {
      lineNo++;
      if (held) applyLine(held.text, held.no, false);
      held = text.length > 0 ? { text, no: lineNo } : undefined;
    }
  } finally {
    input.destroy();
  }
  const tornTail = held !== undefined && !applyLine(held.text, held.no, true);
  return { lines: lineNo, tornTail };
}

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

/** Lines are written in chunks of about this size. */
const CHUNK = 1 << 20;

/** Writes all of `data` at the handle's position (the end, for a file opened to append). */
async function writeAll(fh: FileHandle, data: Buffer): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off);
    off += bytesWritten;
  }
}

/** Makes a rename in `dir` durable. Some file systems refuse to sync a directory: no harm. */
async function syncDir(dir: string): Promise<void> {
  let d: FileHandle | undefined;
  try {
    d = await open(dir, 'r');
    await d.sync();
  } catch {
    // best effort
  } finally {
    await d?.close().catch(() => {});
  }
}

/**
 * Replaces `path` atomically with `lines`: written to a temporary file, synced, renamed over.
 * Returns the bytes written.
 */
async function rewriteFile(path: string, lines: Iterable<string>): Promise<number> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w');
  let bytes = 0;
  try {
    let chunk: string[] = [];
    let size = 0;
    for (const line of lines) {
      chunk.push(line);
      size += line.length + 1;
      if (size >= CHUNK) {
        const data = Buffer.from(chunk.join('\n') + '\n');
        chunk = [];
        size = 0;
        await writeAll(fh, data);
        bytes += data.length;
      }
    }
    if (chunk.length > 0) {
      const data = Buffer.from(chunk.join('\n') + '\n');
      await writeAll(fh, data);
      bytes += data.length;
    }
    await fh.datasync();
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
  await fh.close();
  await rename(tmp, path);
  await syncDir(dirname(path));
  return bytes;
}

/**
 * The open journal. `write` queues a line and returns at once; `commit` resolves once every line
 * queued before it is on disk (written and fdatasync'd). Lines reach the file in the order they
 * were queued. Lines queued while a write is under way share the next write and the next
 * fdatasync (group commit).
 */
export class Journal {
  private fh: FileHandle;
  private queue: string[] = [];
  private waiters: Waiter[] = [];
  private loop: Promise<void> | undefined;
  private error: Error | undefined;
  private closing: Promise<void> | undefined;
  private closed = false;
  /** Bytes written since the last datasync. */
  private unsynced = 0;
  /** Bytes of the last snapshot, and bytes appended since. */
  private base: number;
  private appended = 0;
  private readonly compactMinBytes: number;
  private readonly stat: JournalStats;

  private constructor(
    readonly path: string,
    fh: FileHandle,
    base: number,
    private readonly snapshot: () => Iterable<string>,
    private readonly opts: JournalOptions,
  ) {
    this.fh = fh;
    this.base = base;
    this.compactMinBytes = opts.compactMinBytes ?? 64 * 1024 * 1024;
    this.stat = { writes: 0, datasyncs: 0, compactions: 0, bytes: base };
  }

  /**
   * Rewrites the file at `path` from `snapshot()` (the caller's state, read from the file
   * before) and opens it to append. `snapshot` is called again whenever the file has grown.
   */
  static async create(
    path: string,
    snapshot: () => Iterable<string>,
    opts: JournalOptions = {},
  ): Promise<Journal> {
    await mkdir(dirname(path), { recursive: true });
    const base = await rewriteFile(path, snapshot());
    const fh = await open(path, 'a');
    return new Journal(path, fh, base, snapshot, opts);
  }

  get stats(): JournalStats {
    return { ...this.stat };
  }

  /** Why the journal stopped taking lines, if it did. */
  get failure(): Error | undefined {
    return this.error;
  }

  /** Queues a line (a JSON text without newline); dropped once the journal failed or closed. */
  write(line: string): void {
    if (this.error || this.closed) return;
    this.queue.push(line);
    this.kick();
  }

  /** Resolves once every line queued so far is on disk. */
  commit(): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    if (this.closed) return Promise.reject(new Error(`journal ${this.path} is closed`));
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.kick();
    });
  }

  /** Writes and syncs what is queued, then closes the file. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    // From here on, write() drops lines and commit() refuses: what is queued is written last.
    this.closed = true;
    while (this.loop) await this.loop;
    try {
      if (!this.error) await this.sync();
    } finally {
      await this.fh.close();
    }
  }

  private kick(): void {
    this.loop ??= this.run();
  }

  private async run(): Promise<void> {
    // Let every caller of this event-loop turn queue its lines first: they share the write.
    await new Promise<void>((resolve) => setImmediate(resolve));
    for (;;) {
      if (this.queue.length === 0 && this.waiters.length === 0) {
        // Cleared in the same turn as the check: a line queued from now on starts a new loop.
        this.loop = undefined;
        return;
      }
      const lines = this.queue;
      const waiters = this.waiters;
      this.queue = [];
      this.waiters = [];
      try {
        if (this.appended > Math.max(this.compactMinBytes, this.base)) {
          await this.compact(lines);
        } else {
          await this.append(lines);
          if (waiters.length > 0) await this.sync();
        }
      } catch (err) {
        this.fail(err, waiters);
        this.loop = undefined;
        return;
      }
      for (const w of waiters) w.resolve();
    }
  }

  private async append(lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    const data = Buffer.from(lines.join('\n') + '\n');
    await writeAll(this.fh, data);
    this.stat.writes++;
    this.stat.bytes += data.length;
    this.appended += data.length;
    this.unsynced += data.length;
  }

  private async sync(): Promise<void> {
    if (this.unsynced === 0) return;
    await this.fh.datasync();
    this.stat.datasyncs++;
    this.unsynced = 0;
  }

  /**
   * Replaces the file by a snapshot. `lines` (queued before) are already part of the state the
   * snapshot reads, so they are written only if the rewrite fails. Lines queued during the
   * rewrite describe changes made after parts of the snapshot were read: they go to the new
   * file after it, and replaying them over the snapshot ends in the same state.
   */
  private async compact(lines: string[]): Promise<void> {
    let base: number;
    try {
      base = await rewriteFile(this.path, this.snapshot());
    } catch (err) {
      this.opts.log?.warn(
        { journal: this.path, err },
        'journal rewrite failed; appending to the old file',
      );
      // Try again only after as much growth again.
      this.appended = 0;
      await this.append(lines);
      await this.sync();
      return;
    }
    // The old handle now points at the replaced file: anything written through it is lost.
    const old = this.fh;
    this.fh = await open(this.path, 'a');
    await old.close().catch(() => {});
    this.base = base;
    this.appended = 0;
    this.unsynced = 0;
    this.stat.compactions++;
    this.stat.bytes = base;
  }

  private fail(err: unknown, waiters: Waiter[]): void {
    this.error = new Error(
      `journal ${this.path} failed: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
    this.opts.log?.warn({ journal: this.path, err }, 'journal failed; writes are refused');
    const all = [...waiters, ...this.waiters];
    this.queue = [];
    this.waiters = [];
    for (const w of all) w.reject(this.error);
  }
}
