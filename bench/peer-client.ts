// Which HTTP client carries our hops faster: node:http with a keep-alive agent (what
// src/core/peers.ts uses) or undici's Pool. Both call the same server, in a child process
// on loopback, with a forward-hop sized body (100 envelopes), at a fixed concurrency.
//
//   npx tsx bench/peer-client.ts [--requests 20000] [--concurrency 16] [--rounds 3]
import { fork } from 'node:child_process';
import { Agent, request as httpRequest, createServer } from 'node:http';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
    serve: { type: 'boolean', default: false },
  },
});

if (args.serve) {
  // The peer: reads a JSON body, answers the ids it holds, as a push node does.
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const { messages } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        messages: { id: string }[];
      };
      const body = JSON.stringify({ delivered: messages.map((m) => m.id) });
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 65_000;
  server.listen(0, '127.0.0.1', () => {
    process.send?.({ port: (server.address() as { port: number }).port });
  });
} else {
  await main();
}

async function main(): Promise<void> {
  const requests = Number(args.requests);
  const concurrency = Number(args.concurrency);
  const child = fork(new URL(import.meta.url).pathname, ['--serve'], {
    execArgv: ['--import', 'tsx'],
  });
  const [{ port }] = (await once(child, 'message')) as [{ port: number }];
  const body = JSON.stringify({
    messages: Array.from({ length: 100 }, (_, i) => ({
      id: `01J${String(i).padStart(23, '0')}`,
      to: `user-${i}`,
      payload: { text: 'hello, this is a push message of ordinary size', n: i },
      createdAt: new Date().toISOString(),
    })),
  });

  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const viaNodeHttp = (): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/internal/forward',
          agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 64, pipelining: 1 });
  const viaUndici = async (): Promise<unknown> => {
    const res = await pool.request({
      method: 'POST',
      path: '/internal/forward',
      headers: { 'content-type': 'application/json' },
      body,
    });
    return res.body.json();
  };

  async function run(call: () => Promise<unknown>): Promise<number> {
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next++ < requests) await call();
      }),
    );
    return requests / ((performance.now() - t0) / 1000);
  }

  await run(viaNodeHttp); // warm-up, both
  await run(viaUndici);
  const figures: Record<string, number[]> = {
    'node:http + keep-alive Agent': [],
    'undici Pool': [],
  };
  for (let round = 0; round < Number(args.rounds); round++) {
    figures['node:http + keep-alive Agent']?.push(await run(viaNodeHttp));
    figures['undici Pool']?.push(await run(viaUndici));
  }
  console.log(
    `${requests} requests × ${Number(args.rounds)} rounds, concurrency ${concurrency}, body ${body.length} bytes`,
  );
  for (const [name, rates] of Object.entries(figures)) {
    const sorted = [...rates].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    console.log(
      `${name.padEnd(30)} median ${median.toFixed(0)} req/s  (rounds: ${rates.map((r) => r.toFixed(0)).join(', ')})`,
    );
  }
  agent.destroy();
  await pool.close();
  child.kill();
}
