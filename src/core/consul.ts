import Consul from 'consul';
import { CONSUL_REQUEST_TIMEOUT_MS } from './tuning.js';

export type ConsulClient = InstanceType<typeof Consul>;

/**
 * A Consul client for CONSUL_HTTP_ADDR ("host:port" or a URL), with CONSUL_HTTP_TOKEN on
 * every call. A call that gets no answer fails after CONSUL_REQUEST_TIMEOUT_MS, so a hung
 * agent is noticed like a dead one (blocking watches set their own, longer timeout).
 */
export function createConsul(addr: string, token?: string): ConsulClient {
  const url = new URL(/^https?:\/\//.test(addr) ? addr : `http://${addr}`);
  const secure = url.protocol === 'https:';
  // `timeout` is one of the library's default options, though its typings leave it out.
  const defaults = { timeout: CONSUL_REQUEST_TIMEOUT_MS, ...(token ? { token } : {}) };
  return new Consul({
    host: url.hostname,
    port: Number(url.port || (secure ? 443 : 80)),
    secure,
    defaults,
  });
}
