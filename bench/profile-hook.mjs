// Preloaded into service processes by `npm run bench -- --profile`
// (NODE_OPTIONS="--import <this file>"; Node 20 refuses --cpu-prof in NODE_OPTIONS).
// SIGUSR2 starts the V8 CPU profiler; the next SIGUSR2 (or the process exiting) stops it and
// writes BENCH_PROF_DIR/<service>-<pid>.cpuprofile, the format --cpu-prof writes.
import { writeFileSync, mkdirSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.BENCH_PROF_DIR ?? '/tmp/push-cluster-prof';
const name = process.argv[2] ?? 'node';
const session = new Session();
session.connect();
let running = false;

function start() {
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  session.post('Profiler.start');
  running = true;
}

function stop() {
  if (!running) return;
  running = false;
  // A session on the main thread answers synchronously, so this works in 'exit' too.
  session.post('Profiler.stop', (err, result) => {
    if (err) return;
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${name}-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
  });
}

process.on('SIGUSR2', () => (running ? stop() : start()));
process.on('exit', stop);
