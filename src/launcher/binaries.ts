import { existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, from src/launcher or dist/launcher alike. */
export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Where `consul` or `redis-server` is: its env variable, then what scripts/provision.sh
 * recorded in .deps/bin.env, then PATH. Throws with what to do when none has it.
 */
export function findBinary(name: 'consul' | 'redis-server'): string {
  const envName = name === 'consul' ? 'CONSUL_BIN' : 'REDIS_SERVER_BIN';
  const fromEnv = process.env[envName];
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`${envName}=${fromEnv} does not exist`);
    return fromEnv;
  }
  const recorded = join(PROJECT_ROOT, '.deps', 'bin.env');
  if (existsSync(recorded)) {
    const line = readFileSync(recorded, 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${envName}=`));
    const path = line?.slice(envName.length + 1).trim();
    if (path && existsSync(path)) return path;
  }
  const onPath = findOnPath(name);
  if (onPath) return onPath;
  throw new Error(`${name} not found: run "npm run provision", or set ${envName} to its path`);
}

/** The first `name` in a PATH folder, if any. */
export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    if (dir && existsSync(candidate)) return candidate;
  }
  return undefined;
}
