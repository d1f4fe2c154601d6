/** Plain reads of the Consul HTTP API, so tests check Consul's own answer, not our client's. */

export interface CatalogEntry {
  ServiceID: string;
  ServiceName: string;
  ServiceAddress: string;
  ServicePort: number;
  ServiceMeta: Record<string, string>;
  ServiceTags: string[];
}

export interface HealthCheck {
  CheckID: string;
  ServiceID: string;
  Status: 'passing' | 'warning' | 'critical';
  Output: string;
}

async function get<T>(addr: string, path: string): Promise<T> {
  const res = await fetch(`http://${addr}${path}`);
  if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

export const catalogService = (addr: string, name: string): Promise<CatalogEntry[]> =>
  get(addr, `/v1/catalog/service/${encodeURIComponent(name)}`);

export const serviceChecks = (addr: string, name: string): Promise<HealthCheck[]> =>
  get(addr, `/v1/health/checks/${encodeURIComponent(name)}`);

export async function checkStatus(
  addr: string,
  name: string,
  serviceId: string,
): Promise<string | undefined> {
  const checks = await serviceChecks(addr, name);
  return checks.find((c) => c.ServiceID === serviceId)?.Status;
}
