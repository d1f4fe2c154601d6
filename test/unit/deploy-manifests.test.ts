import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { SEMI_SPACE_MB } from '../../src/launcher/node-options.js';

/**
 * Structure of the deploy files: docker-compose.yml, the Dockerfile and every YAML
 * under deploy/ (Kubernetes with Kustomize, the Consul Helm values). Nothing here runs
 * Docker or a cluster: these are parsing checks (docs/deploy.md says so).
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/** Seconds of a compose duration such as "15s", "1m30s" or "500ms". */
function composeSeconds(text: string): number {
  let total = 0;
  for (const [, n, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g))
    total += Number(n) * { ms: 0.001, s: 1, m: 60, h: 3600 }[unit as 'ms' | 's' | 'm' | 'h'];
  return total;
}

/** Which secrets each service refuses to start without in production (src/core/config.ts). */
const SECRETS_NEEDED: Record<string, string[]> = {
  auth: ['AUTH_ADMIN_KEY', 'JWT_SECRET', 'INTERNAL_SECRET'],
  collect: ['INGEST_API_KEY', 'INTERNAL_SECRET'],
  dispatch: ['INTERNAL_SECRET'],
  push: ['INTERNAL_SECRET'],
};
const APP_SERVICES = Object.keys(SECRETS_NEEDED);

// ---- docker-compose.yml -------------------------------------------------------------------

describe('docker-compose.yml', () => {
  const compose = obj(parse(read('docker-compose.yml'), { merge: true }));
  const services = obj(compose.services);
  const names = Object.keys(services);
  const svc = (name: string): Obj => obj(services[name]);
  const image = (name: string): string => str(svc(name).image);
  const commandText = (name: string): string => {
    const c = svc(name).command;
    return Array.isArray(c) ? c.join(' ') : str(c);
  };
  const env = (name: string): Record<string, string> => {
    const e = svc(name).environment;
    if (Array.isArray(e))
      return Object.fromEntries(
        e.map((line) => {
          const [k, ...v] = String(line).split('=');
          return [k, v.join('=')];
        }),
      );
    return Object.fromEntries(Object.entries(obj(e)).map(([k, v]) => [k, String(v)]));
  };
  const dependsOn = (name: string): Obj => {
    const d = svc(name).depends_on;
    return Array.isArray(d)
      ? Object.fromEntries(d.map((n) => [n, { condition: 'service_started' }]))
      : obj(d);
  };
  const isConsul = (name: string): boolean => image(name).startsWith('hashicorp/consul:');
  const servers = names.filter((n) => isConsul(n) && / -server /.test(` ${commandText(n)} `));
  const agents = names.filter((n) => isConsul(n) && !servers.includes(n));
  const apps = names.filter((n) => image(n).startsWith('push-cluster'));
  const role = (name: string): string => {
    const c = svc(name).command;
    return str(Array.isArray(c) ? c[0] : c?.toString().split(' ')[0]);
  };
  const appsOf = (r: string): string[] => apps.filter((n) => role(n) === r);
  /** The agent whose network namespace the app shares (network_mode: service:<agent>). */
  const agentOf = (app: string): string => str(svc(app).network_mode).replace(/^service:/, '');

  it('has a three-server Consul cluster that bootstraps itself, with the UI', () => {
    expect(servers).toHaveLength(3);
    for (const s of servers) {
      const cmd = commandText(s);
      expect(cmd).toMatch(/^agent /);
      expect(cmd).toContain('-bootstrap-expect=3');
      expect(cmd).toContain('-ui');
      // Every server can find the others, whichever starts first.
      for (const other of servers) expect(cmd).toContain(`-retry-join=${other}`);
      expect(svc(s).healthcheck, `${s} healthcheck`).toBeDefined();
      expect(svc(s).volumes, `${s} keeps its raft data in a volume`).toBeDefined();
    }
  });

  it('has redis and a single-node MongoDB replica set initiated idempotently by its healthcheck', () => {
    const redis = names.filter((n) => image(n).startsWith('redis:'));
    expect(redis).toHaveLength(1);
    expect(svc(redis[0] as string).healthcheck).toBeDefined();

    const mongo = names.filter((n) => image(n).startsWith('mongo:'));
    expect(mongo).toHaveLength(1);
    const m = mongo[0] as string;
    expect(image(m)).toMatch(/^mongo:7/);
    expect(commandText(m)).toMatch(/--replSet rs0/);
    const test = arr(obj(svc(m).healthcheck).test).join(' ');
    expect(test).toContain('rs.initiate(');
    // Idempotent: initiate only when rs.status() says there is no replica set yet.
    expect(test).toMatch(/try \{ rs\.status\(\) \} catch/);
    expect(test).toContain('isWritablePrimary');
  });

  it('runs auth, collect, two dispatch and three push instances from the project image', () => {
    expect(appsOf('auth')).toHaveLength(1);
    expect(appsOf('collect')).toHaveLength(1);
    expect(appsOf('dispatch')).toHaveLength(2);
    expect(appsOf('push')).toHaveLength(3);
    expect(apps).toHaveLength(7);
    for (const a of apps) expect(svc(a).build, `${a} builds the Dockerfile`).toBeDefined();
  });

  it('gives every app container its own Consul client agent, sharing its network namespace', () => {
    const used = apps.map(agentOf);
    expect(new Set(used).size, 'one agent per app').toBe(apps.length);
    expect([...used].sort()).toEqual([...agents].sort());
    for (const a of apps) {
      const agent = agentOf(a);
      expect(agents, `${a} runs beside a client agent`).toContain(agent);
      const cmd = commandText(agent);
      expect(` ${cmd} `).not.toMatch(/ -server /);
      for (const s of servers) expect(cmd).toContain(`-retry-join=${s}`);
      // The app reaches its agent on loopback; the agent's HTTP API stays private.
      expect(env(a).CONSUL_HTTP_ADDR).toBe('127.0.0.1:8500');
      expect(cmd).toContain('-client=127.0.0.1');
      // Consul's checks and the peers reach the app at its advertised name: an alias
      // of the agent container on the network.
      const aliases = Object.values(obj(svc(agent).networks)).flatMap((n) => arr(obj(n).aliases));
      expect(aliases, `${agent} answers for ${a}'s ADVERTISE_ADDRESS`).toContain(
        env(a).ADVERTISE_ADDRESS,
      );
      expect(env(a).HOST).toBe('0.0.0.0');
      // An app container on network_mode: service:… cannot publish ports itself.
      expect(svc(a).ports).toBeUndefined();
    }
    const nodeNames = agents.map((g) => /-node=(\S+)/.exec(commandText(g))?.[1]);
    expect(new Set(nodeNames).size, 'unique Consul node names').toBe(agents.length);
  });

  it('configures every app for production with healthchecks, dependencies and secrets from the environment', () => {
    for (const a of apps) {
      const e = env(a);
      expect(e.NODE_ENV, a).toBe('production');
      expect(e.PORT, `${a} PORT (the image's HEALTHCHECK reads it)`).toMatch(/^\d+$/);
      expect(e.INSTANCE_ID, a).toBeTruthy();
      expect(svc(a).healthcheck ?? svc(agentOf(a)).healthcheck, `${a} healthcheck`).toBeDefined();
      const hc = arr(obj(svc(a).healthcheck).test).join(' ');
      expect(hc).toContain('/health');
      expect(hc).not.toContain('curl');
      expect(composeSeconds(str(svc(a).stop_grace_period)), `${a} drain time`).toBeGreaterThan(10);

      const deps = dependsOn(a);
      expect(obj(deps[agentOf(a)]).condition, `${a} waits for its agent`).toBe('service_healthy');
      for (const secret of SECRETS_NEEDED[role(a)] ?? [])
        expect(e[secret], `${a} ${secret}`).toMatch(new RegExp(`^\\$\\{${secret}:\\?.+\\}$`));
    }
    for (const a of [...appsOf('dispatch'), ...appsOf('push')]) {
      expect(env(a).REDIS_URL).toMatch(/^redis:\/\//);
      expect(obj(dependsOn(a).redis).condition).toBe('service_healthy');
    }
    for (const a of appsOf('collect')) {
      expect(env(a).MONGODB_URL).toMatch(/^mongodb:\/\/.*replicaSet=rs0/);
      expect(obj(dependsOn(a).mongo).condition).toBe('service_healthy');
    }
  });

  it('stores messages where every collect instance sees them: MongoDB, or one collect with a SQLite volume', () => {
    const collects = appsOf('collect');
    expect(collects.length).toBeGreaterThanOrEqual(1);
    const onSqlite = collects.filter((a) => !env(a).MONGODB_URL);
    if (onSqlite.length === 0) return;
    // SQLite is one file on one machine: a single collect, its folder on a volume
    // (the app containers' root filesystem is read-only).
    expect(collects, 'SQLite serves one collect instance').toHaveLength(1);
    const sqlitePath = env(onSqlite[0] as string).SQLITE_PATH || '/data/messages.sqlite';
    const dir = sqlitePath.slice(0, sqlitePath.lastIndexOf('/'));
    const mounts = arr(svc(onSqlite[0] as string).volumes).map((v) =>
      isObj(v) ? str(v.target) : String(v).split(':')[1],
    );
    expect(mounts, `a volume at ${dir}`).toContain(dir);
  });

  it('runs a supported Consul release (1.21 or later) on every agent, the same everywhere', () => {
    const versions = new Set([...servers, ...agents].map((n) => image(n).split(':')[1]));
    expect(versions.size).toBe(1);
    const [major, minor] = String([...versions][0])
      .split('.')
      .map(Number);
    expect(major === 1 ? (minor ?? 0) >= 21 : (major ?? 0) > 1).toBe(true);
  });

  it('has a restart policy everywhere and depends only on services that exist', () => {
    for (const n of names) {
      expect(svc(n).restart, `${n} restart`).toMatch(/^(always|unless-stopped|on-failure)/);
      for (const [dep, spec] of Object.entries(dependsOn(n))) {
        expect(names, `${n} depends on ${dep}`).toContain(dep);
        expect(['service_started', 'service_healthy', 'service_completed_successfully']).toContain(
          obj(spec).condition,
        );
      }
    }
  });

  it('publishes ports only for the Consul UI, collect, dispatch and the push nodes', () => {
    const published = new Map<string, string[]>();
    for (const n of names) {
      const ports = arr(svc(n).ports).map(String);
      if (ports.length > 0) published.set(n, ports);
    }
    const allowed = new Set([
      ...servers,
      ...[...appsOf('collect'), ...appsOf('dispatch'), ...appsOf('push')].map(agentOf),
    ]);
    for (const n of published.keys()) expect(allowed, `${n} publishes ports`).toContain(n);
    // The UI: one server, on the host's loopback (no ACLs in this file).
    const ui = servers.filter((s) => published.has(s));
    expect(ui).toHaveLength(1);
    expect(published.get(ui[0] as string)).toEqual(['127.0.0.1:8500:8500']);
    for (const a of [...appsOf('collect'), ...appsOf('dispatch'), ...appsOf('push')]) {
      const ports = published.get(agentOf(a)) ?? [];
      expect(ports, `${a} is published`).toHaveLength(1);
      expect((ports[0] as string).split(':').at(-1)).toBe(env(a).PORT);
    }
    // A push node advertises ws://<name>:<PORT>/ws: the host port must be the same.
    for (const a of appsOf('push')) {
      const [hostPort, containerPort] = (published.get(agentOf(a))?.[0] ?? '').split(':');
      expect(hostPort).toBe(containerPort);
    }
  });

  it('names images without a registry host', () => {
    for (const n of names) {
      const parts = image(n).split('/');
      if (parts.length > 1) expect(parts[0], n).not.toMatch(/[.:]|^localhost$/);
    }
  });
});

// ---- Dockerfile -----------------------------------------------------------------------

describe('Dockerfile', () => {
  const text = read('Dockerfile');
  // Instructions with their continuation lines joined, comments dropped.
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const all = (op: string): string[] =>
    lines.filter((l) => l.toUpperCase().startsWith(`${op} `)).map((l) => l.slice(op.length + 1));
  const stages = all('FROM');

  const build = lines.slice(0, lines.indexOf(`FROM ${stages[1]}`)).join('\n');
  const runtime = lines.slice(lines.indexOf(`FROM ${stages.at(-1)}`)).join('\n');

  it('is multi-stage: npm ci and npm run build, then production dependencies only', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(stages[0]).toMatch(/ AS build$/i);
    expect(build).toMatch(/RUN (\w+=\S+ )*npm ci/);
    expect(build).toMatch(/RUN npm run build/);
    expect(build).toMatch(/npm prune --omit=dev/);
    expect(runtime).toMatch(/COPY --from=build \/app\/node_modules/);
    expect(runtime).toMatch(/COPY --from=build \/app\/dist/);
  });

  it('builds on a supported Node LTS, the same base for both stages', () => {
    const arg = all('ARG').find((a) => a.startsWith('NODE_IMAGE='));
    expect(arg).toMatch(/^NODE_IMAGE=node:(22|24)-[a-z]+-slim$/);
    for (const s of stages) expect(s).toMatch(/^\$\{NODE_IMAGE\}( AS \w+)?$/i);
  });

  it('compiles better-sqlite3 in the build stage and ships it without compilers', () => {
    // node-gyp needs python3, make and g++ (build-essential) in the build stage.
    expect(build).toMatch(/apt-get install [^\n]*python3/);
    expect(build).toMatch(/apt-get install [^\n]*(build-essential|g\+\+)/);
    // The build loads the addon once, so a broken compile fails the build.
    expect(build).toMatch(/require\('better-sqlite3'\)/);
    // The runtime installs nothing: no compilers, and no npm ci --ignore-scripts that
    // would leave better-sqlite3 without its compiled addon.
    expect(runtime).not.toMatch(/apt-get|build-essential|g\+\+|python3/);
    expect(runtime).not.toMatch(/npm (ci|install)/);
  });

  it("caps V8's young generation as npm start does (src/launcher/node-options.ts)", () => {
    expect(all('ENV').join(' ')).toMatch(
      new RegExp(`NODE_OPTIONS="[^"]*--max-semi-space-size=${SEMI_SPACE_MB}[ "]`),
    );
  });

  it('keeps the SQLite file on a volume writable by the runtime user', () => {
    const sqlitePath = /SQLITE_PATH=(\S+)/.exec(all('ENV').join(' '))?.[1] ?? '';
    expect(sqlitePath).toMatch(/^\/.+\.sqlite$/);
    const dir = sqlitePath.slice(0, sqlitePath.lastIndexOf('/'));
    expect(all('VOLUME').join(' ')).toContain(`"${dir}"`);
    const user = (all('USER').at(-1) ?? '').split(':')[0] as string;
    expect(runtime).toMatch(new RegExp(`chown ${user}(:\\d+)? ${dir}`));
  });

  it('runs as a non-root user', () => {
    const user = all('USER').at(-1) ?? 'root';
    expect(user.split(':')[0]).not.toMatch(/^(root|0)$/);
  });

  it('has a HEALTHCHECK on /health at $PORT with node fetch, the CLI entrypoint and SIGTERM', () => {
    const hc = all('HEALTHCHECK').join(' ');
    expect(hc).toContain('/health');
    expect(hc).toContain('process.env.PORT');
    expect(hc).toContain('fetch(');
    expect(hc).not.toContain('curl');
    expect(all('ENTRYPOINT')).toEqual(['["node", "dist/cli.js"]']);
    expect(all('STOPSIGNAL')).toEqual(['SIGTERM']);
  });

  it('has a .dockerignore that keeps local builds, dependencies and secrets out', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim());
    for (const entry of ['**/node_modules', 'dist', '.git', '.deps', '.env'])
      expect(ignored).toContain(entry);
  });
});

// ---- deploy/ ---------------------------------------------------------------------------

interface Manifest {
  file: string;
  doc: Obj;
}

function yamlFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(ROOT, dir))) {
    const path = join(dir, entry);
    if (statSync(join(ROOT, path)).isDirectory()) out.push(...yamlFilesUnder(path));
    else if (/\.ya?ml$/.test(entry)) out.push(path);
  }
  return out.sort();
}

const deployYaml = yamlFilesUnder('deploy');
const manifests: Manifest[] = deployYaml.flatMap((file) =>
  parseAllDocuments(read(file))
    .map((d) => d.toJS() as unknown)
    .filter(isObj)
    .map((doc) => ({ file, doc })),
);

describe('deploy/ YAML', () => {
  it('parses, every document of every file', () => {
    expect(deployYaml.length).toBeGreaterThan(0);
    for (const file of deployYaml) {
      const docs = parseAllDocuments(read(file));
      for (const d of docs) expect(d.errors, file).toEqual([]);
    }
  });
});

describe('Kubernetes base (deploy/k8s/base)', () => {
  const base = manifests.filter((m) => m.file.startsWith(join('deploy', 'k8s', 'base')));
  const ofKind = (kind: string): Obj[] => base.filter((m) => m.doc.kind === kind).map((m) => m.doc);
  const name = (doc: Obj): string => str(obj(doc.metadata).name);
  const deployments = ofKind('Deployment');
  const byName = (n: string): Obj => deployments.find((d) => name(d) === n) ?? {};
  const podSpec = (d: Obj): Obj => obj(obj(obj(d.spec).template).spec);
  const podLabels = (d: Obj): Obj => obj(obj(obj(obj(d.spec).template).metadata).labels);
  const container = (d: Obj): Obj => obj(arr(podSpec(d).containers)[0]);
  const selects = (selector: Obj, labels: Obj): boolean =>
    Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
  const envVar = (d: Obj, n: string): Obj =>
    obj(arr(container(d).env).find((e) => obj(e).name === n));

  it('has Deployments for auth, collect, dispatch (2 replicas) and push (3 replicas)', () => {
    expect(deployments.map(name).sort()).toEqual([...APP_SERVICES].sort());
    expect(obj(byName('dispatch').spec).replicas).toBe(2);
    expect(obj(byName('push').spec).replicas).toBe(3);
    for (const d of deployments) expect(arr(container(d).args)[0]).toBe(name(d));
  });

  it.each(APP_SERVICES)('%s: readiness and liveness probes on /health', (svcName) => {
    const c = container(byName(svcName));
    const ports = arr(c.ports).map(obj);
    for (const probe of ['readinessProbe', 'livenessProbe']) {
      const get = obj(obj(c[probe]).httpGet);
      expect(get.path, `${svcName} ${probe}`).toBe('/health');
      expect(
        ports.some((p) => p.name === get.port || p.containerPort === get.port),
        `${svcName} ${probe} port`,
      ).toBe(true);
    }
  });

  it.each(APP_SERVICES)(
    '%s: resources, a grace period that fits the drain, hardening',
    (svcName) => {
      const d = byName(svcName);
      const c = container(d);
      const requests = obj(obj(c.resources).requests);
      expect(requests.cpu).toBeDefined();
      expect(requests.memory).toBeDefined();
      expect(obj(obj(c.resources).limits).memory).toBeDefined();

      const grace = Number(podSpec(d).terminationGracePeriodSeconds);
      expect(grace).toBeGreaterThanOrEqual(15);
      const preStop = arr(obj(obj(obj(c.lifecycle).preStop).exec).command).map(String);
      expect(preStop[0]).toBe('sleep');
      expect(grace, 'preStop sleep + 10 s drain fit').toBeGreaterThanOrEqual(
        Number(preStop[1]) + 10,
      );

      expect(obj(podSpec(d).securityContext).runAsNonRoot).toBe(true);
      const sc = obj(c.securityContext);
      expect(sc.readOnlyRootFilesystem).toBe(true);
      expect(sc.allowPrivilegeEscalation).toBe(false);
    },
  );

  it.each(APP_SERVICES)(
    '%s: the node-local Consul agent, its pod IP advertised, secrets by reference',
    (svcName) => {
      const d = byName(svcName);
      expect(obj(obj(envVar(d, 'HOST_IP').valueFrom).fieldRef).fieldPath).toBe('status.hostIP');
      expect(envVar(d, 'CONSUL_HTTP_ADDR').value).toBe('$(HOST_IP):8500');
      // $(VAR) expands only variables defined earlier in the list.
      const order = arr(container(d).env).map((e) => obj(e).name);
      expect(order.indexOf('HOST_IP')).toBeLessThan(order.indexOf('CONSUL_HTTP_ADDR'));
      expect(obj(obj(envVar(d, 'ADVERTISE_ADDRESS').valueFrom).fieldRef).fieldPath).toBe(
        'status.podIP',
      );
      const token = obj(obj(envVar(d, 'CONSUL_HTTP_TOKEN').valueFrom).secretKeyRef);
      expect(token).toMatchObject({ name: 'push-cluster-consul-tokens', key: svcName });
      for (const secret of SECRETS_NEEDED[svcName] ?? []) {
        const ref = obj(obj(envVar(d, secret).valueFrom).secretKeyRef);
        expect(ref, `${svcName} ${secret}`).toMatchObject({
          name: 'push-cluster-secrets',
          key: secret,
        });
      }
      // NODE_ENV=production and HOST come from the shared ConfigMap.
      const cmName = obj(
        obj(arr(container(d).envFrom).find((e) => obj(e).configMapRef)).configMapRef,
      ).name;
      const cm = ofKind('ConfigMap').find((c) => name(c) === cmName);
      expect(obj(cm?.data)).toMatchObject({ NODE_ENV: 'production', HOST: '0.0.0.0' });
    },
  );

  it.each(APP_SERVICES)('%s: a matching Service and a PodDisruptionBudget', (svcName) => {
    const d = byName(svcName);
    const labels = podLabels(d);
    expect(selects(obj(obj(obj(d.spec).selector).matchLabels), labels)).toBe(true);

    const services = ofKind('Service').filter((s) => selects(obj(obj(s.spec).selector), labels));
    expect(services.map(name)).toEqual([svcName]);
    const ports = arr(container(d).ports).map(obj);
    for (const p of arr(obj(services[0]?.spec).ports).map(obj))
      expect(
        ports.some((cp) => cp.name === p.targetPort || cp.containerPort === p.targetPort),
      ).toBe(true);

    const pdbs = ofKind('PodDisruptionBudget').filter((p) =>
      selects(obj(obj(obj(p.spec).selector).matchLabels), labels),
    );
    expect(pdbs).toHaveLength(1);
    const spec = obj(pdbs[0]?.spec);
    expect(spec.minAvailable ?? spec.maxUnavailable).toBeDefined();
  });
});

describe('collect storage on Kubernetes', () => {
  const collect = manifests.find(
    (m) =>
      m.file.startsWith(join('deploy', 'k8s', 'base')) &&
      m.doc.kind === 'Deployment' &&
      str(obj(m.doc.metadata).name) === 'collect',
  );
  const overlay = obj(
    parse(read(join('deploy', 'k8s', 'overlays', 'production', 'kustomization.yaml'))),
  );

  it('reads MONGODB_URL from the Secret: its replicas share one store (SQLite is one machine)', () => {
    const c = obj(arr(obj(obj(obj(collect?.doc.spec).template).spec).containers)[0]);
    const mongo = obj(arr(c.env).find((e) => obj(e).name === 'MONGODB_URL'));
    expect(obj(obj(mongo.valueFrom).secretKeyRef)).toMatchObject({
      name: 'push-cluster-secrets',
      key: 'MONGODB_URL',
    });
    // Not optional: a pod that fell back to SQLite would split the store.
    expect(obj(obj(mongo.valueFrom).secretKeyRef).optional).not.toBe(true);
    const replicas = arr(overlay.replicas)
      .map(obj)
      .find((r) => r.name === 'collect');
    expect(Number(replicas?.count ?? obj(collect?.doc.spec).replicas)).toBeGreaterThanOrEqual(1);
  });
});

describe('kustomizations', () => {
  const kustomizations = deployYaml.filter((f) => /(^|\/)kustomization\.ya?ml$/.test(f));

  it('exist for the base and the production overlay', () => {
    expect(kustomizations).toEqual(
      expect.arrayContaining([
        join('deploy', 'k8s', 'base', 'kustomization.yaml'),
        join('deploy', 'k8s', 'overlays', 'production', 'kustomization.yaml'),
      ]),
    );
  });

  it.each(kustomizations)(
    '%s lists only files that exist, and every manifest beside it',
    (file) => {
      const k = obj(parse(read(file)));
      const dir = dirname(file);
      const listed = [
        ...arr(k.resources).map(String),
        ...arr(k.components).map(String),
        ...arr(k.patches).map((p) => str(obj(p).path)),
        ...arr(k.patchesStrategicMerge).map(String),
      ].filter(Boolean);
      expect(listed.length).toBeGreaterThan(0);
      for (const entry of listed) {
        const path = join(ROOT, dir, entry);
        expect(existsSync(path), `${file}: ${entry}`).toBe(true);
        if (statSync(path).isDirectory())
          expect(existsSync(join(path, 'kustomization.yaml')), `${file}: ${entry}`).toBe(true);
      }
      // No manifest in the folder is forgotten.
      const beside = readdirSync(join(ROOT, dir)).filter(
        (f) => /\.ya?ml$/.test(f) && !/^kustomization\.ya?ml$/.test(f),
      );
      for (const f of beside) expect(listed, `${file} lists ${f}`).toContain(f);
    },
  );

  it('production overlay: replicas, image and patches aim at base Deployments', () => {
    const file = join('deploy', 'k8s', 'overlays', 'production', 'kustomization.yaml');
    const k = obj(parse(read(file)));
    expect(k.namespace).toBeTruthy();
    for (const r of arr(k.replicas).map(obj)) {
      expect(APP_SERVICES).toContain(r.name);
      expect(Number(r.count)).toBeGreaterThanOrEqual(1);
    }
    expect(arr(k.replicas).map((r) => obj(r).name)).toEqual(
      expect.arrayContaining(['dispatch', 'push']),
    );
    const images = arr(k.images).map(obj);
    expect(images.map((i) => i.name)).toContain('push-cluster');
    expect(images.every((i) => i.newTag && i.newTag !== 'latest')).toBe(true);

    const baseNames = new Set(
      manifests
        .filter((m) => m.file.startsWith(join('deploy', 'k8s', 'base')))
        .map((m) => `${str(m.doc.kind)}/${str(obj(m.doc.metadata).name)}`),
    );
    for (const p of arr(k.patches).map(obj)) {
      const patch = obj(parse(read(join(dirname(file), str(p.path)))));
      const target = `${str(patch.kind)}/${str(obj(patch.metadata).name)}`;
      expect(baseNames, `${str(p.path)} patches ${target}`).toContain(target);
    }
  });

  // Where kubectl is installed, its built-in kustomize renders the overlay for real.
  const kubectl = (process.env.PATH ?? '')
    .split(delimiter)
    .map((d) => join(d, 'kubectl'))
    .find((p) => existsSync(p));
  it.skipIf(!kubectl)('production overlay renders with `kubectl kustomize`', () => {
    const out = execFileSync(
      kubectl as string,
      ['kustomize', join(ROOT, 'deploy', 'k8s', 'overlays', 'production')],
      { encoding: 'utf8' },
    );
    const docs = parseAllDocuments(out).map((d) => obj(d.toJS()));
    const deployments = docs.filter((d) => d.kind === 'Deployment');
    expect(deployments.map((d) => str(obj(d.metadata).name)).sort()).toEqual(
      [...APP_SERVICES].sort(),
    );
    for (const d of docs.filter((x) => x.kind !== 'Namespace'))
      expect(obj(d.metadata).namespace).toBe('push-cluster');
    for (const d of deployments) {
      const c = obj(arr(obj(obj(obj(d.spec).template).spec).containers)[0]);
      expect(str(c.image)).toMatch(/push-cluster:[\w.-]+$/);
    }
  });

  it('base Deployments use the image name that the overlay retags', () => {
    const images = manifests
      .filter((m) => m.file.startsWith(join('deploy', 'k8s', 'base')))
      .filter((m) => m.doc.kind === 'Deployment')
      .flatMap((m) => arr(obj(obj(obj(m.doc.spec).template).spec).containers))
      .map((c) => str(obj(c).image));
    expect(new Set(images)).toEqual(new Set(['push-cluster']));
  });
});

describe('Consul Helm values (deploy/consul/values.yaml)', () => {
  const values = obj(parse(read(join('deploy', 'consul', 'values.yaml'))));
  const global = obj(values.global);

  it('pins the same supported Consul release as docker-compose.yml', () => {
    const compose = obj(parse(read('docker-compose.yml'), { merge: true }));
    const composeConsul = Object.values(obj(compose.services))
      .map((s) => str(obj(s).image))
      .find((i) => i.startsWith('hashicorp/consul:'));
    expect(global.image).toBe(composeConsul);
    expect(str(global.image)).toMatch(/^hashicorp\/consul:1\.2\d\.\d+$/);
  });

  it('runs three servers, a client agent DaemonSet and the UI', () => {
    expect(obj(values.server).replicas).toBe(3);
    expect(obj(values.client).enabled).toBe(true);
    expect(obj(values.ui).enabled).toBe(true);
  });

  it('bootstraps ACLs and encrypts gossip with a key kept in a Secret', () => {
    expect(obj(global.acls).manageSystemACLs).toBe(true);
    const gossip = obj(global.gossipEncryption);
    expect(gossip.autoGenerate === true || (!!gossip.secretName && !!gossip.secretKey)).toBe(true);
  });

  it('leaves plain HTTP on the agents while the services speak http:// to them', () => {
    // Every Deployment's CONSUL_HTTP_ADDR is host:port (plain HTTP).
    expect(obj(global.tls).httpsOnly).toBe(false);
  });
});
