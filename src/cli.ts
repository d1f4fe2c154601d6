#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { createAuthService } from './auth/auth-service.js';
import { createCollectService } from './collect/collect-service.js';
import {
  ConfigError,
  loadConfig,
  redactConfig,
  SERVICES,
  type ServiceName,
} from './core/config.js';
import { createConsul } from './core/consul.js';
import { createLogger } from './core/logger.js';
import type { ServiceHost } from './core/service-host.js';
import { createDispatchService } from './dispatch/dispatch-service.js';
import { createPushService } from './push/push-service.js';
import { createStore } from './store/create-store.js';

const HELP = `push-cluster — WebSocket push-message cluster on Consul

Usage:
  push-cluster <service> [--port N] [--host ADDR]
  push-cluster cluster            start a whole local cluster (what "npm start" runs)

Services:
  auth       issues and verifies client tokens          (default port 7001)
  collect    HTTP ingestion API: POST /v1/messages     (default port 7002)
  dispatch   routes messages to push nodes, /v1/connect (default port 7003)
  push       WebSocket node: GET /ws                    (default port 7101)

Options:
  --port N        HTTP port (0 = any free port); overrides PORT
  --host ADDR     address to bind; overrides HOST
  -h, --help      this text

Configuration comes from the environment: see the README's configuration table.
`;

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const name = positionals[0];
  if (values.help || !name) {
    process.stdout.write(HELP);
    process.exit(name || values.help ? 0 : 2);
  }
  if (name === 'cluster') {
    const { runLocalCluster } = await import('./launcher/local-cluster.js');
    return runLocalCluster();
  }
  if (!(SERVICES as readonly string[]).includes(name)) {
    process.stderr.write(
      `unknown service "${name}": expected one of ${SERVICES.join(', ')}, or cluster\n`,
    );
    process.exit(2);
  }
  const service = name as ServiceName;
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) {
    process.stderr.write(`--port must be a port number, got "${values.port}"\n`);
    process.exit(2);
  }
  const env = values.host ? { ...process.env, HOST: values.host } : process.env;
  let config;
  try {
    config = loadConfig(service, env, { port });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${service}: ${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
  const log = createLogger(
    service,
    config.INSTANCE_ID ?? `${service}:${config.port}`,
    config.LOG_LEVEL,
  );
  log.info({ config: redactConfig(config) }, 'configuration');
  for (const secret of config.devSecrets)
    log.warn({ secret }, `${secret} is not set: using the development value (never in production)`);
  const consul = createConsul(config.CONSUL_HTTP_ADDR, config.CONSUL_HTTP_TOKEN);

  let host: ServiceHost;
  switch (service) {
    case 'auth':
      host = createAuthService(config, log, consul);
      break;
    case 'collect':
      host = createCollectService(
        config,
        log,
        consul,
        await createStore({
          mongodbUrl: config.MONGODB_URL,
          mongodbDb: config.MONGODB_DB,
          sqlitePath: config.SQLITE_PATH,
          ackedRetentionMs: config.ACKED_RETENTION,
          log,
        }),
      );
      break;
    case 'dispatch':
      host = createDispatchService(config, log, consul);
      break;
    case 'push':
      host = createPushService(config, log, consul);
      break;
  }

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping: leaving routing, draining');
    // The drain must finish within 10 s: a stuck dependency must not hold the process.
    const deadline = setTimeout(() => {
      log.error('drain took longer than 10 s: exiting anyway');
      process.exit(1);
    }, 10_000);
    host.stop().then(
      () => {
        clearTimeout(deadline);
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  try {
    await host.start();
  } catch (err) {
    log.fatal({ err: (err as Error).message }, `${service} could not start`);
    process.exit(1);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
