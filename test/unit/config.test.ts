import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  DEV_SECRETS,
  loadConfig,
  parseDurationMs,
  redactConfig,
} from '../../src/core/config.js';

describe('configuration', () => {
  it('gives unset secrets development values outside production, and says which', () => {
    const config = loadConfig('collect', {});
    expect(config.secrets.INGEST_API_KEY).toBe(DEV_SECRETS.INGEST_API_KEY);
    expect(config.devSecrets.sort()).toEqual(['INGEST_API_KEY', 'INTERNAL_SECRET']);
    expect(config.port).toBe(7002);
  });

  it('refuses to start in production without the secrets the service needs', () => {
    expect(() => loadConfig('auth', { NODE_ENV: 'production', INTERNAL_SECRET: 's' })).toThrow(
      /AUTH_ADMIN_KEY, JWT_SECRET are not set/,
    );
    expect(() => loadConfig('push', { NODE_ENV: 'production' })).toThrow(ConfigError);
    const ok = loadConfig('push', { NODE_ENV: 'production', INTERNAL_SECRET: 's'.repeat(16) });
    expect(ok.devSecrets).toEqual([]);
  });

  it('refuses to start in production with a development value or a short secret, naming each', () => {
    const strong = {
      NODE_ENV: 'production',
      AUTH_ADMIN_KEY: 'a'.repeat(16),
      JWT_SECRET: 'j'.repeat(32),
      INTERNAL_SECRET: 'i'.repeat(16),
      INGEST_API_KEY: 'k'.repeat(16),
    };
    expect(loadConfig('auth', strong).secrets.JWT_SECRET).toBe(strong.JWT_SECRET);
    expect(loadConfig('collect', strong).secrets.INGEST_API_KEY).toBe(strong.INGEST_API_KEY);
    const refusals: [string, Record<string, string>, RegExp][] = [
      ['auth', { JWT_SECRET: DEV_SECRETS.JWT_SECRET }, /JWT_SECRET is the development value/],
      ['auth', { JWT_SECRET: 'j'.repeat(31) }, /JWT_SECRET .* shorter than 32 characters/],
      ['auth', { AUTH_ADMIN_KEY: 'replace-me' }, /AUTH_ADMIN_KEY .* shorter than 16/],
      ['collect', { INGEST_API_KEY: DEV_SECRETS.INGEST_API_KEY }, /INGEST_API_KEY/],
      ['push', { INTERNAL_SECRET: 'i'.repeat(15) }, /INTERNAL_SECRET/],
    ];
    for (const [service, over, message] of refusals)
      expect(() =>
        loadConfig(service as 'auth' | 'collect' | 'push', { ...strong, ...over }),
      ).toThrow(message);
    // Outside production the same values are taken.
    expect(
      loadConfig('auth', { ...strong, NODE_ENV: 'development', JWT_SECRET: 'x' }).secrets
        .JWT_SECRET,
    ).toBe('x');
  });

  it('refuses a WS_MAX_PAYLOAD too small for an ack, and a WS_PING_INTERVAL under 1 s', () => {
    // Below 256 bytes a client's ack could be larger than the frames the node accepts: the
    // socket would be closed (1009) at its first ack, and no message ever acked.
    expect(() => loadConfig('push', { WS_MAX_PAYLOAD: '255' })).toThrow(
      /WS_MAX_PAYLOAD: at least 256/,
    );
    expect(loadConfig('push', { WS_MAX_PAYLOAD: '256' }).WS_MAX_PAYLOAD).toBe(256);
    expect(() => loadConfig('push', { WS_PING_INTERVAL: '999ms' })).toThrow(
      /WS_PING_INTERVAL: at least 1s/,
    );
    expect(loadConfig('push', { WS_PING_INTERVAL: '1s' }).WS_PING_INTERVAL).toBe(1000);
    expect(loadConfig('push', {}).WS_PING_INTERVAL).toBe(20_000);
  });

  it('refuses each duration below its floor, and past what a Node timer can wait, naming it', () => {
    // Below the floor a setting breaks something (see config.ts); past 2^31 - 1 ms Node ran
    // the timer after 1 ms: WS_PING_INTERVAL=1000h pinged, and cut sockets, every millisecond.
    const floors: Record<string, number> = {
      CONSUL_CHECK_INTERVAL: 1000,
      CONSUL_CHECK_TIMEOUT: 100,
      CONSUL_DEREGISTER_AFTER: 60_000,
      CONSUL_SYNC_INTERVAL: 100,
      WS_PING_INTERVAL: 1000,
      PEER_TIMEOUT: 100,
      HTTP_REQUEST_TIMEOUT: 1000,
      ACK_TIMEOUT: 100,
      ACK_RETRY_MAX: 100,
      SWEEP_INTERVAL: 10,
      HANDOFF_GRACE: 100,
      UNROUTED_RECHECK: 100,
    };
    const maxTimerMs = 2 ** 31 - 1;
    for (const [name, floorMs] of Object.entries(floors)) {
      // ACK_RETRY_MAX may not be below ACK_TIMEOUT: both move together here.
      const env = (ms: number | string) => {
        const value = typeof ms === 'number' ? `${ms}ms` : ms;
        return name.startsWith('ACK_')
          ? { ACK_TIMEOUT: value, ACK_RETRY_MAX: value }
          : { [name]: value };
      };
      const read = (ms: number | string) => loadConfig('push', env(ms))[name as 'ACK_TIMEOUT'];
      expect(read(floorMs), name).toBe(floorMs);
      expect(() => read(floorMs - 1), name).toThrow(new RegExp(`${name}: at least`));
      expect(read(maxTimerMs), name).toBe(maxTimerMs);
      expect(() => read(maxTimerMs + 1), name).toThrow(new RegExp(`${name}: at most 2147483647ms`));
      expect(() => read('1000h'), name).toThrow(/Node runs a longer timer after 1 ms/);
      // A number too large for a double is refused too, not taken as Infinity.
      expect(() => read(`${'9'.repeat(400)}h`), name).toThrow(new RegExp(`${name}: at most`));
    }
    expect(loadConfig('push', {}).CONSUL_CHECK_INTERVAL).toBe(1000);
  });

  it('bounds the lifetimes in seconds, the route expiry and the acked retention', () => {
    const tenYears = 10 * 365 * 24 * 3600;
    for (const name of ['MESSAGE_TTL_SECONDS', 'TOKEN_MAX_TTL_SECONDS', 'TOKEN_CACHE_SECONDS']) {
      expect(loadConfig('auth', { [name]: String(tenYears) })[name as 'MESSAGE_TTL_SECONDS']).toBe(
        tenYears,
      );
      expect(() => loadConfig('auth', { [name]: String(tenYears + 1) }), name).toThrow(
        new RegExp(`${name}: at most ${tenYears} seconds`),
      );
    }
    expect(() => loadConfig('collect', { MESSAGE_TTL_SECONDS: '1e22' })).toThrow(
      /MESSAGE_TTL_SECONDS: at most/,
    );
    expect(loadConfig('collect', { ACKED_RETENTION: '0ms' }).ACKED_RETENTION).toBe(0);
    expect(loadConfig('collect', { ACKED_RETENTION: '87600h' }).ACKED_RETENTION).toBe(
      tenYears * 1000,
    );
    expect(() => loadConfig('collect', { ACKED_RETENTION: '87601h' })).toThrow(
      /ACKED_RETENTION: at most/,
    );
    // Renewed every third of it: at most 3 × the longest timer, at least 3 s.
    const maxRouteTtl = 3 * Math.floor((2 ** 31 - 1) / 1000);
    expect(loadConfig('push', { ROUTE_TTL_SECONDS: '3' }).ROUTE_TTL_SECONDS).toBe(3);
    expect(() => loadConfig('push', { ROUTE_TTL_SECONDS: '2' })).toThrow(
      /ROUTE_TTL_SECONDS: at least 3/,
    );
    expect(loadConfig('push', { ROUTE_TTL_SECONDS: String(maxRouteTtl) }).ROUTE_TTL_SECONDS).toBe(
      maxRouteTtl,
    );
    expect(() => loadConfig('push', { ROUTE_TTL_SECONDS: String(maxRouteTtl + 1) })).toThrow(
      `ROUTE_TTL_SECONDS: at most ${maxRouteTtl} (about 74 days)`,
    );
  });

  it('refuses an ACK_RETRY_MAX below ACK_TIMEOUT and a TOKEN_TTL_SECONDS above TOKEN_MAX_TTL_SECONDS', () => {
    expect(() => loadConfig('collect', { ACK_TIMEOUT: '2m' })).toThrow(
      /ACK_RETRY_MAX \(60000 ms\) must be at least ACK_TIMEOUT \(120000 ms\)/,
    );
    expect(loadConfig('collect', { ACK_TIMEOUT: '1m' }).ACK_TIMEOUT).toBe(60_000);
    expect(() =>
      loadConfig('auth', { TOKEN_TTL_SECONDS: '7200', TOKEN_MAX_TTL_SECONDS: '3600' }),
    ).toThrow(/TOKEN_TTL_SECONDS \(7200\) must be at most TOKEN_MAX_TTL_SECONDS \(3600\)/);
    expect(
      loadConfig('auth', { TOKEN_TTL_SECONDS: '3600', TOKEN_MAX_TTL_SECONDS: '3600' })
        .TOKEN_TTL_SECONDS,
    ).toBe(3600);
  });

  it('reports every invalid variable at once', () => {
    const attempt = () =>
      loadConfig('push', { PORT: 'x', CONSUL_CHECK_INTERVAL: 'soon', LOG_LEVEL: 'loud' });
    expect(attempt).toThrow(ConfigError);
    for (const name of ['PORT', 'CONSUL_CHECK_INTERVAL', 'LOG_LEVEL'])
      expect(attempt).toThrow(name);
  });

  it('needs a key pair for RS256 and ES256', () => {
    expect(() => loadConfig('auth', { JWT_ALGORITHM: 'RS256' })).toThrow(
      /JWT_PRIVATE_KEY and JWT_PUBLIC_KEY/,
    );
  });

  it('parses durations and hides secrets and URL credentials from logs', () => {
    expect(parseDurationMs('1500ms')).toBe(1500);
    expect(parseDurationMs('2s')).toBe(2000);
    expect(parseDurationMs('1m')).toBe(60_000);
    const config = loadConfig('collect', {
      MONGODB_URL: 'mongodb://user:pw@db:27017',
      INGEST_API_KEY: 'topsecret',
    });
    const text = JSON.stringify(redactConfig(config));
    expect(text).not.toContain('pw@');
    expect(text).not.toContain('topsecret');
    expect(text).toContain('mongodb://[redacted]@db:27017');
  });

  it('refuses message limits that a later hop could not carry, naming them', () => {
    expect(() => loadConfig('collect', { MAX_PAYLOAD_BYTES: '2000000' })).toThrow(/MAX_BODY_BYTES/);
    expect(() =>
      loadConfig('collect', { MAX_PAYLOAD_BYTES: '65536', WS_MAX_BUFFERED_BYTES: '100000' }),
    ).toThrow(/WS_MAX_BUFFERED_BYTES/);
    expect(() =>
      loadConfig('collect', { MAX_PAYLOAD_BYTES: '65536', MAX_REQUEST_PAYLOAD_BYTES: '1000' }),
    ).toThrow(/MAX_REQUEST_PAYLOAD_BYTES/);
    const ok = loadConfig('collect', { MAX_PAYLOAD_BYTES: '1048576' });
    expect(ok.MAX_PAYLOAD_BYTES).toBe(1_048_576);
  });

  it('reads the optional METRICS_TOKEN as a secret, kept out of the logged config', () => {
    const config = loadConfig('push', { METRICS_TOKEN: 'scrape-me' });
    expect(config.secrets.METRICS_TOKEN).toBe('scrape-me');
    expect(JSON.stringify(redactConfig(config))).not.toContain('scrape-me');
    expect(loadConfig('push', {}).secrets.METRICS_TOKEN).toBeUndefined();
  });
});
