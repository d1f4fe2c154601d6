import { hostname } from 'node:os';
import { z } from 'zod';

export const SERVICES = ['auth', 'collect', 'dispatch', 'push'] as const;
export type ServiceName = (typeof SERVICES)[number];

export const DEFAULT_PORTS: Record<ServiceName, number> = {
  auth: 7001,
  collect: 7002,
  dispatch: 7003,
  push: 7101,
};

/** The SQLite message store's file when SQLITE_PATH is unset. */
export const DEFAULT_SQLITE_PATH = '.data/messages.sqlite';

/** Development values for secrets left unset outside production. Printed at start-up. */
export const DEV_SECRETS = {
  AUTH_ADMIN_KEY: 'dev-admin-key',
  INGEST_API_KEY: 'dev-ingest-key',
  JWT_SECRET: 'dev-jwt-secret-do-not-use-in-production',
  INTERNAL_SECRET: 'dev-internal-secret',
} as const;
type DevSecretName = keyof typeof DEV_SECRETS;
/** Secrets that are off unless set: no development value stands in for them. */
type OptionalSecretName = 'METRICS_TOKEN';
type SecretName = DevSecretName | OptionalSecretName;

/** The shortest secret production accepts (characters). HS256 needs a key of at least 256
 *  bits (RFC 7518, 3.2), 32 bytes; `openssl rand -hex 32` gives 64 characters. */
const MIN_SECRET_LENGTH: Record<DevSecretName, number> = {
  AUTH_ADMIN_KEY: 16,
  INGEST_API_KEY: 16,
  JWT_SECRET: 32,
  INTERNAL_SECRET: 16,
};

/** Which secrets each service cannot run without. */
const SECRETS_NEEDED: Record<ServiceName, DevSecretName[]> = {
  auth: ['AUTH_ADMIN_KEY', 'JWT_SECRET', 'INTERNAL_SECRET'],
  collect: ['INGEST_API_KEY', 'INTERNAL_SECRET'],
  dispatch: ['INTERNAL_SECRET'],
  push: ['INTERNAL_SECRET'],
};

/** Node runs a timer set for longer than this many ms after 1 ms instead (a
 *  TimeoutOverflowWarning): an interval of 1000h would fire every millisecond. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const TIMER_LIMIT = `at most ${MAX_TIMER_MS}ms (about 24.8 days): Node runs a longer timer after 1 ms`;
/** The longest a message, a token or an acked message may be kept: 10 years, so that every
 *  date computed from it stays a valid one. */
const MAX_LIFETIME_SECONDS = 10 * 365 * 24 * 3600;
const LIFETIME_LIMIT = `at most ${MAX_LIFETIME_SECONDS} seconds (10 years)`;

/** A duration: 500ms, 2s, 1m or 1h, in ms. */
const durationText = z
  .string()
  .regex(/^\d+(ms|s|m|h)$/, 'a duration such as 500ms, 2s, 1m or 1h')
  .transform(parseDurationMs);

/**
 * A duration of a timer, a timeout, a Consul setting or a retry delay: at least `atLeast`
 * (`why` says what a shorter one breaks) and within Node's timers. Unbounded, 1000h fired
 * every millisecond and 1ms timed out every call.
 */
function duration(atLeast: string, why: string) {
  const minMs = parseDurationMs(atLeast);
  return durationText
    .refine((ms) => ms >= minMs, `at least ${atLeast}: ${why}`)
    .refine((ms) => ms <= MAX_TIMER_MS, TIMER_LIMIT);
}

/** A whole number of seconds, 1 or more: a lifetime. */
const seconds = z.coerce.number().int().positive().max(MAX_LIFETIME_SECONDS, LIFETIME_LIMIT);

/** Three times the longest timer, in seconds: a binding is renewed every third of it. */
const MAX_ROUTE_TTL_SECONDS = 3 * Math.floor(MAX_TIMER_MS / 1000);

/** What an ACK_TIMEOUT or ACK_RETRY_MAX under its floor breaks. */
const ACK_TOO_SOON = 'a client could not ack in time, and every message would be pushed again';

/** The smallest WS_MAX_PAYLOAD: room for any frame a client sends (acks, pings). */
const MIN_WS_MAX_PAYLOAD = 256;

const envSchema = z.object({
  NODE_ENV: z.string().default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  HOST: z.string().default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).optional(),
  INTERNAL_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  /** The port of the listener that serves only /health, for Consul's check (0 = any). */
  HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(0),
  ADVERTISE_ADDRESS: z.string().optional(),
  INSTANCE_ID: z.string().optional(),

  CONSUL_HTTP_ADDR: z.string().default('127.0.0.1:8500'),
  CONSUL_HTTP_TOKEN: z.string().optional(),
  CONSUL_CHECK_INTERVAL: duration(
    '1s',
    'Consul checks no more often, and raises a shorter interval to 1s with a warning in its own log only',
  ).default(1000),
  CONSUL_CHECK_TIMEOUT: duration(
    '100ms',
    'a check that must answer sooner fails whenever the instance pauses (a garbage collection), ' +
      'and the instance drops out of routing',
  ).default(1000),
  /** Consecutive failed checks before an instance turns critical (FailuresBeforeCritical). */
  CONSUL_CHECK_FAILURES: z.coerce.number().int().min(1).max(10).default(1),
  CONSUL_DEREGISTER_AFTER: duration(
    '1m',
    'Consul raises a shorter one to 1m with a warning in its own log only',
  ).default(60_000),
  CONSUL_SYNC_INTERVAL: duration(
    '100ms',
    'each sync calls the local Consul agent, which more often only loads it',
  ).default(5000),

  REDIS_URL: z.string().default('redis://127.0.0.1:6379'),
  /** Seeds of a Redis Cluster; when set, the services use it rather than REDIS_URL. */
  REDIS_CLUSTER_NODES: z
    .string()
    .regex(/^\s*[^,\s]+:\d+\s*(,\s*[^,\s]+:\d+\s*)*$/, 'comma-separated host:port seeds')
    .optional(),
  MONGODB_URL: z.string().optional(),
  MONGODB_DB: z.string().default('push_cluster'),

  AUTH_ADMIN_KEY: z.string().min(1).optional(),
  INGEST_API_KEY: z.string().min(1).optional(),
  INTERNAL_SECRET: z.string().min(1).optional(),
  JWT_SECRET: z.string().min(1).optional(),
  METRICS_TOKEN: z.string().min(1).optional(),
  JWT_ALGORITHM: z.enum(['HS256', 'RS256', 'ES256']).default('HS256'),
  JWT_PRIVATE_KEY: z.string().optional(),
  JWT_PUBLIC_KEY: z.string().optional(),
  JWT_ISSUER: z.string().default('push-cluster'),
  JWT_AUDIENCE: z.string().default('push-cluster'),
  TOKEN_TTL_SECONDS: seconds.default(3600),
  TOKEN_MAX_TTL_SECONDS: seconds.default(30 * 24 * 3600),

  MAX_BODY_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(1024 * 1024),
  /** Request bodies a service's public port holds at once, by announced length: past it,
   *  503 busy before the body is read (src/core/body-budget.ts). */
  MAX_BODY_BYTES_IN_FLIGHT: z.coerce
    .number()
    .int()
    .positive()
    .default(128 * 1024 * 1024),
  MAX_PAYLOAD_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(64 * 1024),
  MAX_PAYLOAD_DEPTH: z.coerce.number().int().min(1).max(100).default(32),
  MAX_REQUEST_PAYLOAD_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(16 * 1024 * 1024),
  MESSAGE_TTL_SECONDS: seconds.default(7 * 24 * 3600),
  ROUTE_TTL_SECONDS: z.coerce
    .number()
    .int()
    .min(
      3,
      'at least 3: a binding is renewed every third of it, and one renewal late by more ' +
        "than two thirds of it loses the user's route",
    )
    .max(
      MAX_ROUTE_TTL_SECONDS,
      `at most ${MAX_ROUTE_TTL_SECONDS} (about 74 days): it is renewed every third of it, by a ` +
        `timer, and Node runs a timer longer than ${MAX_TIMER_MS}ms after 1 ms`,
    )
    .default(30),
  WS_PUBLIC_URL: z
    .string()
    .regex(/^wss?:\/\//, 'a ws:// or wss:// URL')
    .optional(),
  WS_MAX_PAYLOAD: z.coerce
    .number()
    .int()
    .min(
      MIN_WS_MAX_PAYLOAD,
      `at least ${MIN_WS_MAX_PAYLOAD} bytes: every client frame must fit, and a socket is ` +
        'closed (1009) on the first ack that does not (an ack is about 50 bytes)',
    )
    .default(64 * 1024),
  WS_MAX_BUFFERED_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(4 * 1024 * 1024),
  WS_PING_INTERVAL: duration(
    '1s',
    'a socket that has not answered its ping an interval later is cut, so a shorter one cuts ' +
      'sockets whenever a node or a network stalls for that long',
  ).default(20_000),
  WS_MAX_FRAMES_PER_SECOND: z.coerce.number().int().positive().default(2000),
  WS_MAX_INVALID_FRAMES: z.coerce.number().int().positive().default(20),
  /** Sockets one user may hold on one push node: a leaked token or a client that opens a
   *  socket per page view cannot take a node's open files from everyone else. */
  WS_MAX_SOCKETS_PER_USER: z.coerce.number().int().positive().default(64),
  /** Sockets one push node accepts at most; unset: its open-files limit less a reserve
   *  (src/push/socket-capacity.ts). */
  WS_MAX_CONNECTIONS: z.coerce.number().int().positive().optional(),
  TOKEN_CACHE_SECONDS: z.coerce
    .number()
    .int()
    .min(0)
    .max(MAX_LIFETIME_SECONDS, LIFETIME_LIMIT)
    .default(30),
  /** node: push nodes check tokens with the public key auth publishes (RS256, ES256), and
   *  ask auth only when they hold none (HS256); auth: they ask auth for every token. */
  TOKEN_VERIFY: z.enum(['node', 'auth']).default('node'),
  PEER_TIMEOUT: duration(
    '100ms',
    'a call between services that must answer sooner fails whenever a peer pauses, and every ' +
      'message waits for the sweeper',
  ).default(5000),
  /** Longest a client may take to send a whole request (headers and body) to any service:
   *  past it, 408 request_timeout. Node's default of 5 minutes let a body sent a byte at a
   *  time hold a connection that long. */
  HTTP_REQUEST_TIMEOUT: duration(
    '1s',
    'a client on a slow network could not send even a small request in time',
  ).default(30_000),
  ACK_TIMEOUT: duration('100ms', ACK_TOO_SOON).default(10_000),
  ACK_RETRY_MAX: duration('100ms', ACK_TOO_SOON).default(60_000),
  MAX_ATTEMPTS: z.coerce.number().int().min(1).default(5),
  SWEEP_INTERVAL: duration('10ms', 'each sweep queries the store').default(1000),
  HANDOFF_GRACE: duration(
    '100ms',
    'the sweeper would push a message again while its hand-off is still under way',
  ).default(5000),
  UNROUTED_RECHECK: duration(
    '100ms',
    'each recheck looks the user up in Redis and the store again',
  ).default(15_000),
  /** The SQLite message store's file, used when MONGODB_URL is unset (':memory:' for tests). */
  SQLITE_PATH: z.string().min(1).default(DEFAULT_SQLITE_PATH),
  /** How long an acked message is kept after its ack (MESSAGE_TTL_SECONDS still caps it). */
  ACKED_RETENTION: durationText
    .refine((ms) => ms <= MAX_LIFETIME_SECONDS * 1000, LIFETIME_LIMIT)
    .default(3_600_000),
});

export type Env = z.infer<typeof envSchema>;

export interface Config extends Omit<Env, SecretName> {
  service: ServiceName;
  port: number;
  advertiseAddress: string;
  production: boolean;
  secrets: Record<DevSecretName, string> & Partial<Record<OptionalSecretName, string>>;
  /** Secrets that got a development value because they were unset. */
  devSecrets: DevSecretName[];
}

export class ConfigError extends Error {}

/** Reads and validates the environment once, for one service. Throws ConfigError with every problem. */
export function loadConfig(
  service: ServiceName,
  env: NodeJS.ProcessEnv = process.env,
  overrides: { port?: number } = {},
): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  const e = parsed.data;
  const production = e.NODE_ENV === 'production';
  const secrets: Config['secrets'] = {
    ...({} as Record<DevSecretName, string>),
    ...(e.METRICS_TOKEN ? { METRICS_TOKEN: e.METRICS_TOKEN } : {}),
  };
  const devSecrets: DevSecretName[] = [];
  const missing: DevSecretName[] = [];
  for (const name of Object.keys(DEV_SECRETS) as DevSecretName[]) {
    const value = e[name];
    if (value !== undefined) secrets[name] = value;
    else if (!production) {
      secrets[name] = DEV_SECRETS[name];
      if (SECRETS_NEEDED[service].includes(name)) devSecrets.push(name);
    } else if (SECRETS_NEEDED[service].includes(name)) missing.push(name);
    else secrets[name] = '';
  }
  if (service === 'auth' && e.JWT_ALGORITHM !== 'HS256') {
    const idx = missing.indexOf('JWT_SECRET');
    if (idx >= 0) missing.splice(idx, 1);
    if (!e.JWT_PRIVATE_KEY || !e.JWT_PUBLIC_KEY) {
      throw new ConfigError(
        `JWT_ALGORITHM=${e.JWT_ALGORITHM} needs JWT_PRIVATE_KEY and JWT_PUBLIC_KEY (PEM)`,
      );
    }
  }
  if (missing.length > 0) {
    throw new ConfigError(
      `NODE_ENV=production and ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not set: ` +
        `${service} will not start with a development secret in production`,
    );
  }
  if (production) {
    // The development values are in this repository, and a short secret is guessed: either
    // lets anyone mint tokens (JWT_SECRET, AUTH_ADMIN_KEY), post messages or call hops.
    const weak = SECRETS_NEEDED[service].filter((name) => {
      if (name === 'JWT_SECRET' && e.JWT_ALGORITHM !== 'HS256') return false;
      const value = secrets[name];
      return value === DEV_SECRETS[name] || value.length < MIN_SECRET_LENGTH[name];
    });
    if (weak.length > 0) {
      throw new ConfigError(
        `NODE_ENV=production and ${weak
          .map(
            (name) =>
              `${name} is the development value or shorter than ${MIN_SECRET_LENGTH[name]} characters`,
          )
          .join(', ')}: ` + 'use a random value, e.g. `openssl rand -hex 32`',
      );
    }
  }
  // Nothing accepted at the edge may be refused inside: one message must fit a public
  // body, and a socket's send buffer with room to spare.
  if (
    e.MAX_PAYLOAD_BYTES > e.MAX_BODY_BYTES ||
    e.MAX_PAYLOAD_BYTES * 2 > e.WS_MAX_BUFFERED_BYTES ||
    e.MAX_PAYLOAD_BYTES > e.MAX_REQUEST_PAYLOAD_BYTES
  ) {
    throw new ConfigError(
      `MAX_PAYLOAD_BYTES (${e.MAX_PAYLOAD_BYTES}) must be at most MAX_BODY_BYTES ` +
        `(${e.MAX_BODY_BYTES}), at most MAX_REQUEST_PAYLOAD_BYTES (${e.MAX_REQUEST_PAYLOAD_BYTES}) ` +
        `and at most half of WS_MAX_BUFFERED_BYTES (${e.WS_MAX_BUFFERED_BYTES})`,
    );
  }
  if (e.ACK_RETRY_MAX < e.ACK_TIMEOUT) {
    throw new ConfigError(
      `ACK_RETRY_MAX (${e.ACK_RETRY_MAX} ms) must be at least ACK_TIMEOUT (${e.ACK_TIMEOUT} ms): ` +
        'it is the longest wait between two pushes of an unacked message, ACK_TIMEOUT the first',
    );
  }
  if (e.TOKEN_TTL_SECONDS > e.TOKEN_MAX_TTL_SECONDS) {
    throw new ConfigError(
      `TOKEN_TTL_SECONDS (${e.TOKEN_TTL_SECONDS}) must be at most TOKEN_MAX_TTL_SECONDS ` +
        `(${e.TOKEN_MAX_TTL_SECONDS}): a token asked for without ttlSeconds would outlive the ` +
        'longest one may ask for',
    );
  }
  const port = overrides.port ?? e.PORT ?? DEFAULT_PORTS[service];
  const advertiseAddress = e.ADVERTISE_ADDRESS ?? (e.HOST === '0.0.0.0' ? hostname() : e.HOST);
  const {
    AUTH_ADMIN_KEY: _a,
    INGEST_API_KEY: _i,
    INTERNAL_SECRET: _s,
    JWT_SECRET: _j,
    METRICS_TOKEN: _m,
    ...rest
  } = e;
  return {
    ...rest,
    // What createRedis connects to: with REDIS_CLUSTER_NODES, a redis-cluster:// URL of
    // its seeds (with REDIS_URL's credentials, if any).
    REDIS_URL: e.REDIS_CLUSTER_NODES
      ? `redis-cluster://${/^rediss?:\/\/([^@/]*@)/.exec(e.REDIS_URL)?.[1] ?? ''}${e.REDIS_CLUSTER_NODES.replace(/\s/g, '')}`
      : e.REDIS_URL,
    service,
    port,
    advertiseAddress,
    production,
    secrets,
    devSecrets,
  };
}

/** The config as it may be logged: secrets and credentials in URLs hidden. */
export function redactConfig(config: Config): Record<string, unknown> {
  const { secrets: _secrets, JWT_PRIVATE_KEY, ...rest } = config;
  return {
    ...rest,
    JWT_PRIVATE_KEY: JWT_PRIVATE_KEY ? '[redacted]' : undefined,
    CONSUL_HTTP_TOKEN: rest.CONSUL_HTTP_TOKEN ? '[redacted]' : undefined,
    REDIS_URL: redactUrl(rest.REDIS_URL),
    MONGODB_URL: rest.MONGODB_URL ? redactUrl(rest.MONGODB_URL) : undefined,
  };
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//[redacted]@');
}

export function parseDurationMs(text: string): number {
  const m = /^(\d+)(ms|s|m|h)$/.exec(text);
  if (!m) throw new Error(`not a duration: ${text}`);
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return n * unit;
}
