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
    const ok = loadConfig('push', { NODE_ENV: 'production', INTERNAL_SECRET: 's' });
    expect(ok.devSecrets).toEqual([]);
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
});
