import { fileURLToPath } from 'node:url';
import { Child, waitFor } from '../../src/launcher/child.js';

const SCRIPT = fileURLToPath(new URL('./fixtures/instance.mjs', import.meta.url));

/** Starts a registered instance in its own process and waits until it has registered. */
export async function startFixtureInstance(
  consulAddr: string,
  name: string,
  id: string,
): Promise<Child> {
  let ready = false;
  const child = new Child(id, process.execPath, [SCRIPT, consulAddr, name, id], {
    echo: (line) => {
      if (line.startsWith('ready ')) ready = true;
    },
  });
  await waitFor(`fixture instance ${id} to register`, () => {
    if (!child.running) throw new Error(`fixture exited:\n${child.recentOutput()}`);
    return ready;
  });
  return child;
}
