/**
 * Every Redis key the cluster uses, built here and nowhere else.
 *
 * routes: `pc:route:<userId>`  sorted set, member = push node id, score = when that
 *         binding expires (ms since epoch). A user on two nodes has two members.
 * node index: `pc:node:<nodeId>:users`  set of the user ids bound to a node, so the
 *         users of a dead node can be unbound without scanning.
 */
export const ROUTE_KEY_PREFIX = 'pc:route:';
export const routeKey = (userId: string): string => `${ROUTE_KEY_PREFIX}${userId}`;
export const nodeUsersKey = (nodeId: string): string => `pc:node:${nodeId}:users`;
