// Tuning constants: the fixed limits and timings of each service that are not
// configuration (the environment settings are in config.ts and the README's table).
// One flat list of named values, each with what it bounds and why it has this value,
// grouped by service. Change one here, not where it is used.

// ---- every service -----------------------------------------------------------------

/** Internal bodies carry batches: they may be this many times MAX_BODY_BYTES. */
export const INTERNAL_BODY_FACTOR = 16;

/** Connections the kernel holds for a server before it accepts them (Node's default is 511;
 *  Linux caps it at net.core.somaxconn, 4096 by default). When a dead push node's clients
 *  all reconnect within a quarter second, a full queue drops their SYNs and each retries
 *  only after 1, 3, 7 s: in the bench's storm of 15,000 users, 511 gave 1,926 handshake
 *  timeouts and 21.9 s, 4096 none and 16.3 s. */
export const LISTEN_BACKLOG = 4096;

/** How often each service runs its health probes (health.ts); /health answers from the
 *  last round. Consul checks every second by default. */
export const HEALTH_PROBE_MS = 500;
/** A probe slower than this counts as failed (under Consul's 1 s check timeout). */
export const HEALTH_PROBE_TIMEOUT_MS = 800;

/** The share of an internal body a hand-off batch may fill, so that it (and each push
 *  node's part of it, re-serialized by dispatch) always fits the next hop. */
export const HANDOFF_BODY_SHARE = 0.5;

/** Longest wait before a Consul watch that ended by itself is started again (the wait
 *  doubles from 1 s). */
export const WATCH_RESTART_MAX_MS = 30_000;

/** How long one Redis command may take before it fails (a hung Redis must not stall
 *  connects, renewals or hand-offs: callers retry on their own terms). */
export const REDIS_COMMAND_TIMEOUT_MS = 1000;

// ---- push node -------------------------------------------------------------------

/** WebSocket handshakes a push node runs per turn of the event loop (handshake-queue.ts):
 *  each checks a token (about 0.1 ms for ES256), so a turn stays within a few ms. */
export const HANDSHAKES_PER_TURN = 16;

/** A keep-alive round pings this many sockets per turn of the event loop, and spreads its
 *  turns over KEEP_ALIVE_SPREAD of the ping interval. A ping costs about 13 µs of CPU here:
 *  one loop over 15,000 sockets held a ws server's event loop 150–210 ms on a quiet machine,
 *  time in which it answers nothing else, its health check included (longer on a busy one). */
export const KEEP_ALIVE_SLICE = 256;
export const KEEP_ALIVE_SPREAD = 0.25;

/** A push node whose Consul agent has not answered for this long is out of routing for
 *  good: it closes its sockets with 1012 so that their clients move to a node in routing. */
export const AGENT_LOST_MS = 5000;
/** How long a push node stays out of the passing set before dispatch unbinds its users. */
export const EVICTION_UNBIND_GRACE_MS = 5000;
/** A Consul call (other than a blocking watch) that gets no answer fails after this long. */
export const CONSUL_REQUEST_TIMEOUT_MS = 2000;

/** How long a push node gathers the connects' Redis binds and first replay pages before it
 *  sends them, one write for all (while one is out, the next waits for it anyway): a
 *  connect waits this much longer for its bind and its replay (what is stored meanwhile
 *  reaches it by that replay). In the bench's capacity runs (50,000 connects over three
 *  nodes): 0 → 3 ms took the push nodes from 0.22 to 0.17–0.20 ms of CPU per connect each,
 *  collect from 0.14 to 0.10–0.11 and Redis from 0.061 to 0.039–0.049; 3 → 10 ms (with the
 *  replay query's LIMIT fixed, 2026-11-22) the nodes from 0.434 to 0.374 ms together, collect
 *  from 0.063 to 0.042, and the connect rate from 2,347/s to 2,709/s; 20 ms gained nothing
 *  more (0.376, 0.038, 2,610/s). */
export const CONNECT_BATCH_MS = 10;

/** Unacked messages per page of a replay (`unackedHop`): a replay pages until none is left. */
export const REPLAY_PAGE = 500;

/** How long a socket remembers the ids of its replay, so that a live copy of a replayed
 *  message that dispatch forwards shortly after is not pushed a second time. */
export const REPLAY_DEDUPE_MS = 30_000;

/** Longest wait between two tries of a replay page collect could not serve (the wait
 *  doubles from 1 s); tries go on while the socket is open. */
export const REPLAY_RETRY_MAX_MS = 30_000;

/** How often a replay looks whether the socket has sent enough to take the next page. */
export const REPLAY_POLL_MS = 10;

/** Most frames a client may send beyond its frame budget, one earned per message pushed to
 *  it (its ack): acking a large replay as it arrives is never taken for a flood. */
export const MAX_ACKS_OWED = 100_000;

/** Most pushed-but-unacked ids tracked per socket, for the drain's wait for acks. */
export const MAX_TRACKED_UNACKED = 1000;

/** How long a drain waits for clients to ack what they were pushed before closing them. */
export const DRAIN_ACK_WAIT_MS = 2000;

/** How long the ack batcher gathers clients' acks before passing them to collect. */
export const ACK_FLUSH_MS = 10;

/** How long the ack batcher waits before trying again when collect could not take acks. */
export const ACK_RETRY_MS = 1000;

/** Most acks waiting to be passed to collect; beyond it acks are dropped (the messages
 *  are then pushed again after ACK_TIMEOUT, which is safe). */
export const MAX_WAITING_ACKS = 100_000;

/** Most token verifications the authenticator caches (least recently used go first). */
export const MAX_CACHED_TOKENS = 10_000;

/** Most token checks a push node has in flight with auth: as many as its connection pool to
 *  a peer holds (64 sockets in `Peers`), so that none waits out of sight inside the pool. */
export const VERIFY_IN_FLIGHT = 64;

/** Most connects waiting for a token check; beyond it a connect is refused with 503 `busy`
 *  at once. 512 is about half a second of checks on a 2-core box at ease, well under a
 *  client's 10 s handshake timeout. */
export const MAX_WAITING_VERIFIES = 512;

/** How often a push node fetches auth's token key again (auth may rotate it): tokens
 *  signed with a key auth has replaced are accepted this long at most after the change. */
export const TOKEN_KEY_REFRESH_MS = 60_000;
/** How soon a push node tries again to fetch a token key it could not get; the wait
 *  doubles with each failure in a row, up to TOKEN_KEY_REFRESH_MS. */
export const TOKEN_KEY_RETRY_MS = 1000;

// ---- dispatch ----------------------------------------------------------------------

/** How long /v1/connect still hands out the last passing push nodes once none passes (a
 *  storm can fail every node's check at once); past it, 503 no_push_node. */
export const CONNECT_LAST_KNOWN_MS = 30_000;

/** Other push nodes /v1/connect names beside the one it hands out: a client that loses its
 *  node goes straight to one of them, at random, without asking dispatch again. A few are
 *  enough: a client falls back to /v1/connect when its pick refuses it. */
export const CONNECT_FALLBACKS = 4;

// ---- collect -----------------------------------------------------------------------

/** Users whose first replay pages collect reads at once (`unackedFirstPagesHop`): a
 *  MongoDB store answers them concurrently; SQLite one after the other anyway. */
export const FIRST_PAGES_CONCURRENCY = 16;

/** Most messages in one hand-off to dispatch (`handoffHop`). */
export const HANDOFF_MAX_BATCH = 1000;

/** How soon a message dispatch could not hand to its node is handed off again. */
export const HANDOFF_RETRY_MS = 1000;

/** Most due messages the redelivery sweeper claims from the store at once. */
export const SWEEP_BATCH = 1000;

/** Payload bytes the sweeper claims at once at most: with large payloads it claims fewer
 *  messages (64 KiB payloads: 1,000; 1 MiB: 64). */
export const SWEEP_BATCH_BYTES = 64 * 1024 * 1024;

/** Messages the sweeper claims at once, for payloads of up to `maxPayloadBytes`. */
export function sweepBatch(maxPayloadBytes: number): number {
  return Math.max(10, Math.min(SWEEP_BATCH, Math.floor(SWEEP_BATCH_BYTES / maxPayloadBytes)));
}

/** Hand-off bytes queued or in flight (in hand-off batches) past which messages just
 *  stored are left to the sweeper. */
export const HANDOFF_BACKLOG_BATCHES = 8;

/** A claimed message is due again after this long if the sweeper dies mid-way. */
export const SWEEP_LEASE_MS = 10_000;
/** How long collect holds a `delivered` mark, waiting for the ack that makes it moot
 *  (at most a quarter of HANDOFF_GRACE, so the sweeper never finds the message due first). */
export const DELIVERED_MARK_DELAY_MS = 1000;
