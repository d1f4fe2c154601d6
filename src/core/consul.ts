import Consul from 'consul';

export type ConsulClient = InstanceType<typeof Consul>;

/** A Consul client for CONSUL_HTTP_ADDR ("host:port" or a URL), with CONSUL_HTTP_TOKEN on every call. */
export function createConsul(addr: string, token?: string): ConsulClient {
  const url = new URL(/^https?:\/\//.test(addr) ? addr : `http://${addr}`);
  const secure = url.protocol === 'https:';
  return new Consul({
    host: url.hostname,
    port: Number(url.port || (secure ? 443 : 80)),
    secure,
    defaults: token ? { token } : {},
  });
}
