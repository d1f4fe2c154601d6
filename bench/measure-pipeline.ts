// Single-message latency ingest → socket (100 sequential messages, one client) and the
// idle RSS of every process of a local cluster. Run: npm run measure:pipeline
import { startCluster } from '../test/support/cluster.js';
import { mintToken, TestClient, wsUrlOf } from '../test/support/clients.js';
import { KEYS } from '../test/support/cluster.js';
import { ms, percentile, rssBytes } from './stats.js';

const COUNT = 100;
const cluster = await startCluster({ pushNodes: 2 });
try {
  // Idle first: nothing connected, nothing sent.
  await new Promise((r) => setTimeout(r, 3000));
  const rows: [string, number][] = [];
  for (const p of cluster.all()) rows.push([p.id, await rssBytes(p.child.pid as number)]);
  rows.push(['consul agent', await rssBytes(cluster.deps.consul.child.pid as number)]);
  rows.push(['redis-server', await rssBytes(cluster.deps.redis.child.pid as number)]);
  console.log('idle RSS:');
  for (const [name, bytes] of rows)
    console.log(`  ${name.padEnd(28)} ${(bytes / 1024 / 1024).toFixed(1)} MiB`);

  const client = await TestClient.connect(
    wsUrlOf(cluster, 0),
    'bench-user',
    await mintToken(cluster, 'bench-user'),
    { ack: true },
  );
  const latencies: number[] = [];
  const accepted: number[] = [];
  for (let i = 0; i < COUNT + 5; i++) {
    const before = client.frames.length;
    const t0 = performance.now();
    const res = await fetch(`${cluster.collect.url}/v1/messages`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${KEYS.INGEST_API_KEY}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ to: 'bench-user', payload: { i, pad: 'x'.repeat(150) } }),
    });
    if (res.status !== 202) throw new Error(`ingest answered ${res.status}`);
    await res.arrayBuffer();
    if (i >= 5) accepted.push(performance.now() - t0);
    await client.waitForMessages(before + 1);
    // The first five warm connection pools and the JIT: not counted.
    if (i >= 5) latencies.push((client.arrivals[before] as number) - t0);
  }
  client.close();
  console.log(
    `ingest answered 202 after: median ${ms(percentile(accepted, 50))}, p99 ${ms(percentile(accepted, 99))}`,
  );
  console.log(
    `ingest → socket, ${COUNT} sequential messages: median ${ms(percentile(latencies, 50))}, p99 ${ms(percentile(latencies, 99))}, max ${ms(Math.max(...latencies))}`,
  );
} finally {
  await cluster.stop();
}
