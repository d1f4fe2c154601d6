// Preloaded into the cluster's service processes by the bench (NODE_OPTIONS="--import <this
// file>"): on SIGUSR2 the process runs a full garbage collection, through the inspector
// (Node 20 refuses --expose-gc in NODE_OPTIONS). The capacity scenario collects before it
// reads a push node's heap and RSS, so that the figures hold what the connections keep,
// not the garbage of opening them. Never loaded together with profile-hook.mjs (also SIGUSR2).
import { Session } from 'node:inspector';

const session = new Session();
session.connect();
process.on('SIGUSR2', () => {
  session.post('HeapProfiler.collectGarbage');
});
