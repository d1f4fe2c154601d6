import { connect } from 'node:net';

export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  /** The body as text ('' when there is none). */
  body: string;
}

/** The header lines of a valid WebSocket handshake (RFC 6455's sample key). */
export const HANDSHAKE_HEADERS: readonly [string, string][] = [
  ['connection', 'Upgrade'],
  ['upgrade', 'websocket'],
  ['sec-websocket-version', '13'],
  ['sec-websocket-key', 'dGhlIHNhbXBsZSBub25jZQ=='],
];

/**
 * Sends one HTTP/1.1 request exactly as given — the request target, header lines and
 * body bytes untouched — and reads the answer until the server closes. fetch and
 * node:http normalize or refuse the very spellings a hostile client sends; this does not.
 */
export function rawRequest(
  port: number,
  o: {
    method?: string;
    target: string;
    /** Header lines as [name, value] pairs, repeats allowed, in this order. */
    headers?: [string, string][];
    body?: Buffer | string;
    /** The body is written in two parts, the second 100 ms after the first: a character or
     *  a token split between two reads. */
    splitBodyAt?: number;
    timeoutMs?: number;
  },
): Promise<RawAnswer> {
  const body = o.body === undefined ? Buffer.alloc(0) : Buffer.from(o.body);
  const given = o.headers ?? [];
  const has = (name: string): boolean => given.some(([n]) => n.toLowerCase() === name);
  const headers: [string, string][] = [
    ...(has('host') ? [] : ([['host', `127.0.0.1:${port}`]] as [string, string][])),
    ...(has('connection') ? [] : ([['connection', 'close']] as [string, string][])),
    ...given,
  ];
  if (!has('content-length') && !has('transfer-encoding'))
    headers.push(['content-length', String(body.length)]);
  const head =
    `${o.method ?? 'GET'} ${o.target} HTTP/1.1\r\n` +
    headers.map(([n, v]) => `${n}: ${v}\r\n`).join('') +
    '\r\n';
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(
          `no complete answer to ${o.method ?? 'GET'} ${o.target} within ${o.timeoutMs ?? 5000} ms`,
        ),
      );
    }, o.timeoutMs ?? 5000);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      // An accepted WebSocket upgrade stays open: its status line is the whole answer.
      if (Buffer.concat(chunks).toString('latin1').startsWith('HTTP/1.1 101')) socket.destroy();
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(parseAnswer(Buffer.concat(chunks)));
      } catch (err) {
        reject(err as Error);
      }
    });
    const whole = Buffer.concat([Buffer.from(head, 'latin1'), body]);
    if (o.splitBodyAt === undefined) return void socket.write(whole);
    const at = head.length + o.splitBodyAt;
    socket.write(whole.subarray(0, at));
    setTimeout(() => socket.write(whole.subarray(at)), 100);
  });
}

function parseAnswer(raw: Buffer): RawAnswer {
  const text = raw.toString('utf8');
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) throw new Error(`not an HTTP answer: ${JSON.stringify(text.slice(0, 200))}`);
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  let body = text.slice(end + 4);
  if (headers['transfer-encoding'] === 'chunked') body = unchunk(body);
  return { status, headers, body };
}

function unchunk(body: string): string {
  let out = '';
  let rest = body;
  for (;;) {
    const lineEnd = rest.indexOf('\r\n');
    const size = parseInt(rest.slice(0, lineEnd), 16);
    if (!size) return out;
    out += rest.slice(lineEnd + 2, lineEnd + 2 + size);
    rest = rest.slice(lineEnd + 2 + size + 2);
  }
}
