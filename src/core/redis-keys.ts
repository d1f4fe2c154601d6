/**
 * Every Redis key the cluster uses, built here and nowhere else (never inside Lua).
 *
 * routes: `pc:route:<userId>`  sorted set, member = push node id, score = when that
 *         binding expires (ms since epoch). A user on two nodes has two members.
 * node index: `pc:node:<nodeId>:users`  set of the user ids bound to a node, so the
 *         users of a dead node can be unbound without scanning.
 *
 * Every command and script touches one key, so both work on Redis Cluster, where the
 * keys of different users (and a node's index) live on different shards.
 */
export const routeKey = (userId: string): string => `pc:route:${userId}`;
export const nodeUsersKey = (nodeId: string): string => `pc:node:${nodeId}:users`;
