import { createConnection } from 'node:net';
import { findBinary } from './binaries.js';
import { freePort, launchUntilReady, type Child } from './child.js';

export interface RedisServer {
  child: Child;
  port: number;
  url: string;
  stop(): Promise<void>;
  /** Stops and starts it again on the same port: with no persistence, every key is gone. */
  restart(): Promise<void>;
}

/** A throw-away redis-server on loopback: no persistence, so a restart loses every key. */
export async function startRedisServer(
  o: { port?: number; echo?: (line: string) => void; tiedToLauncher?: boolean } = {},
): Promise<RedisServer> {
  const bin = findBinary('redis-server');
  const port = o.port ?? (await freePort());
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--daemonize',
    'no',
    '--loglevel',
    'warning',
  ];
  const server: RedisServer = {
    child: await launch(),
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      await server.child.stop(5000);
    },
    async restart() {
      await server.child.stop(5000);
      server.child = await launch();
    },
  };
  return server;

  function launch(): Promise<Child> {
    return launchUntilReady({
      name: 'redis-server',
      command: bin,
      args,
      what: `redis-server on port ${port}`,
      ready: () => ping(port),
      timeoutMs: 10_000,
      echo: o.echo,
      tiedToLauncher: o.tiedToLauncher,
    });
  }
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ port, host: '127.0.0.1' });
    sock.setTimeout(500);
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.once('data', (d) => {
      sock.destroy();
      resolve(d.toString().startsWith('+PONG'));
    });
    sock.once('error', () => resolve(false));
    sock.once('timeout', () => {
      sock.destroy();
      resolve(false);
    });
  });
}
