// A WebSocket client for the bench's connection scenarios, written on a bare TCP socket.
//
// Why not `ws`: the capacity scenario opens 50,000 connections on the same two cores as the
// cluster it measures, and a `ws` client (an HTTP ClientRequest, its parser, a Receiver and a
// Sender stream per socket) cost 0.47 ms of CPU per connect there (bench of 2026-11-22), as
// much as the three push nodes together: the harness, not the system, set the connect rate.
// This client does only what those scenarios need (RFC 6455 as a client: the opening
// handshake with its key checked, unmasked text frames in, masked frames out, pings answered,
// the close handshake), so the box's CPU goes to the servers. A client on a phone costs
// the cluster the same either way; the throughput scenarios, where Socket.IO's own client
// is compared, keep `ws`.
import { createHash, randomFillSync } from 'node:crypto';
import { connect, type Socket } from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const HEAD_END = Buffer.from('\r\n\r\n');
/** Larger handshake answers than this are refused (ours are < 1 KiB). */
const MAX_HEAD_BYTES = 16 * 1024;

const enum Opcode {
  Continuation = 0x0,
  Text = 0x1,
  Binary = 0x2,
  Close = 0x8,
  Ping = 0x9,
  Pong = 0xa,
}

/** Handshake keys and masking keys, taken from a pool filled by the CSPRNG (a call per
 *  key cost 12 µs). */
const randomPool = Buffer.allocUnsafe(4096);
let randomAt = randomPool.length;
function randomSlice(bytes: 4 | 16): Buffer {
  if (randomAt + bytes > randomPool.length) {
    randomFillSync(randomPool);
    randomAt = 0;
  }
  randomAt += bytes;
  return randomPool.subarray(randomAt - bytes, randomAt);
}

/** One client frame: FIN set, masked as RFC 6455 § 5.3 requires of a client. */
function clientFrame(opcode: Opcode, data: Buffer): Buffer {
  const len = data.length;
  const lenBytes = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const head = 2 + lenBytes;
  const out = Buffer.allocUnsafe(head + 4 + len);
  out[0] = 0x80 | opcode;
  if (lenBytes === 0) out[1] = 0x80 | len;
  else if (lenBytes === 2) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
    out.writeUInt32BE(len >>> 0, 6);
  }
  const mask = randomSlice(4);
  mask.copy(out, head);
  for (let i = 0; i < len; i++) out[head + 4 + i] = (data[i] as number) ^ (mask[i & 3] as number);
  return out;
}

export interface LeanConnectOptions {
  localAddress?: string;
  /** The handshake fails after this long. */
  timeoutMs: number;
  /** Each text message from the server, from the first one on (it may come with the 101). */
  onMessage: (ws: LeanWebSocket, text: string) => void;
  /** Once, when the connection ends after it opened. */
  onClose?: (ws: LeanWebSocket) => void;
}

/** The answer to a handshake that was not 101, with its status and body. */
export class UpgradeRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`upgrade refused with ${status} ${body}`);
  }
}

export class LeanWebSocket {
  /** True from the 101 until the socket closes. */
  isOpen = true;
  /** Bytes of a frame not complete yet. */
  private partial: Buffer | undefined;
  /** Fragments of a text message not complete yet. */
  private fragments: Buffer[] | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly o: LeanConnectOptions,
  ) {
    socket.on('close', () => this.closed());
  }

  /** Opens a connection to a ws:// URL; rejects with UpgradeRefused when the server answers
   *  anything but 101, or with the socket's error. */
  static open(url: string, o: LeanConnectOptions): Promise<LeanWebSocket> {
    const target = new URL(url);
    if (target.protocol !== 'ws:') throw new Error(`${url}: only ws:// is supported`);
    const key = randomSlice(16).toString('base64');
    const accept = createHash('sha1')
      .update(key + GUID)
      .digest('base64');
    const socket = connect({
      host: target.hostname,
      port: Number(target.port || 80),
      localAddress: o.localAddress,
      noDelay: true,
    });
    socket.write(
      `GET ${target.pathname}${target.search} HTTP/1.1\r\n` +
        `Host: ${target.host}\r\n` +
        'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    return new Promise((resolve, reject) => {
      let head: Buffer = Buffer.alloc(0);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      const timer = setTimeout(
        () => fail(new Error(`handshake timed out after ${o.timeoutMs} ms`)),
        o.timeoutMs,
      );
      socket.on('error', fail);
      const onData = (chunk: Buffer): void => {
        head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
        const end = head.indexOf(HEAD_END);
        if (end < 0) {
          if (head.length > MAX_HEAD_BYTES) fail(new Error('handshake answer too large'));
          return;
        }
        socket.off('data', onData);
        const lines = head.subarray(0, end).toString('latin1').split('\r\n');
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '')?.[1] ?? NaN);
        const rest = head.subarray(end + HEAD_END.length);
        if (status !== 101) return refused(status, rest);
        const accepted = lines.some(
          (line) =>
            line.slice(0, 21).toLowerCase() === 'sec-websocket-accept:' &&
            line.slice(21).trim() === accept,
        );
        if (!accepted) return fail(new Error('101 without the Sec-WebSocket-Accept of our key'));
        clearTimeout(timer);
        socket.off('error', fail);
        const ws = new LeanWebSocket(socket, o);
        socket.on('error', () => socket.destroy()); // 'close' follows
        socket.on('data', (c: Buffer) => ws.feed(c));
        resolve(ws);
        if (rest.length > 0) ws.feed(rest);
      };
      // A refusal's body follows its head and ends with the connection.
      const refused = (status: number, first: Buffer): void => {
        const body: Buffer[] = [first];
        socket.on('data', (c: Buffer) => body.push(c));
        socket.once('end', () => fail(new UpgradeRefused(status, Buffer.concat(body).toString())));
        socket.once('close', () =>
          fail(new UpgradeRefused(status, Buffer.concat(body).toString())),
        );
      };
      socket.on('data', onData);
    });
  }

  send(text: string): void {
    if (this.isOpen) this.socket.write(clientFrame(Opcode.Text, Buffer.from(text)));
  }

  /** Ends the connection at once, without the close handshake. */
  terminate(): void {
    this.socket.destroy();
  }

  /** Reads every complete server frame in the bytes so far. */
  private feed(chunk: Buffer): void {
    const buf = this.partial ? Buffer.concat([this.partial, chunk]) : chunk;
    let at = 0;
    while (buf.length - at >= 2) {
      const b0 = buf[at] as number;
      const b1 = buf[at + 1] as number;
      if (b1 & 0x80) return this.protocolError('a server frame was masked');
      let len = b1 & 0x7f;
      let head = 2;
      if (len === 126) {
        if (buf.length - at < 4) break;
        len = buf.readUInt16BE(at + 2);
        head = 4;
      } else if (len === 127) {
        if (buf.length - at < 10) break;
        len = buf.readUInt32BE(at + 2) * 2 ** 32 + buf.readUInt32BE(at + 6);
        head = 10;
      }
      if (buf.length - at < head + len) break;
      const payload = buf.subarray(at + head, at + head + len);
      at += head + len;
      this.frame(b0 & 0x0f, (b0 & 0x80) !== 0, payload);
      if (!this.isOpen) return;
    }
    // Copied, so a small remainder does not hold a large read buffer.
    this.partial = at < buf.length ? Buffer.from(buf.subarray(at)) : undefined;
  }

  private frame(opcode: number, fin: boolean, payload: Buffer): void {
    switch (opcode) {
      case Opcode.Text:
      case Opcode.Continuation:
        if (opcode === Opcode.Continuation && !this.fragments)
          return this.protocolError('a continuation without a first fragment');
        if (fin && !this.fragments) return this.o.onMessage(this, payload.toString('utf8'));
        (this.fragments ??= []).push(Buffer.from(payload));
        if (!fin) return;
        {
          const whole = Buffer.concat(this.fragments).toString('utf8');
          this.fragments = undefined;
          this.o.onMessage(this, whole);
        }
        return;
      case Opcode.Ping:
        this.socket.write(clientFrame(Opcode.Pong, payload));
        return;
      case Opcode.Pong:
        return;
      case Opcode.Close:
        // Answered with the same status code, then the server closes the TCP connection.
        this.socket.end(clientFrame(Opcode.Close, payload.subarray(0, 2)));
        this.closed();
        return;
      case Opcode.Binary:
      default:
        return this.protocolError(`opcode ${opcode} is not used by these servers`);
    }
  }

  private protocolError(why: string): void {
    const code = Buffer.alloc(2);
    code.writeUInt16BE(1002);
    this.socket.end(clientFrame(Opcode.Close, Buffer.concat([code, Buffer.from(why)])));
    this.closed();
  }

  private closed(): void {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.o.onClose?.(this);
  }
}
