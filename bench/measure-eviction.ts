// How long a SIGKILLed instance stays in the passing view: kill → gone from a live
// ServiceView (the one dispatch routes with). Five runs against a real Consul agent.
// Run: npm run measure:eviction
import { startConsulAgent } from '../src/launcher/consul-agent.js';
import { waitFor } from '../src/launcher/child.js';
import { createConsul } from '../src/core/consul.js';
import { ServiceView } from '../src/core/discovery.js';
import { createLogger } from '../src/core/logger.js';
import { startFixtureInstance } from '../test/support/fixture-instance.js';
import { ms, percentile } from './stats.js';

const RUNS = 5;
const agent = await startConsulAgent();
const consul = createConsul(agent.addr);
const view = new ServiceView({
  consul,
  log: createLogger('bench', 'eviction', 'warn'),
  service: 'victim',
});
await view.start();
const samples: number[] = [];
try {
  for (let run = 1; run <= RUNS; run++) {
    const id = `victim-${run}`;
    const child = await startFixtureInstance(agent.addr, 'victim', id);
    await waitFor(`${id} passing in the view`, () => view.get(id) !== undefined, 10_000, 5);
    const killedAt = performance.now();
    child.kill('SIGKILL');
    await waitFor(`${id} to leave the view`, () => view.get(id) === undefined, 10_000, 1);
    const elapsed = performance.now() - killedAt;
    samples.push(elapsed);
    console.log(`run ${run}: SIGKILL → out of the passing view in ${ms(elapsed)}`);
    await consul.agent.service.deregister(id);
  }
  console.log(`median of ${RUNS}: ${ms(percentile(samples, 50))} (check interval 1s, timeout 1s)`);
} finally {
  view.stop();
  await agent.stop();
}
