// Every call between our services, defined once. The caller (`Peers.call(hop, body)`)
// and the handler (`ServiceHost.handle(hop, fn)`) both import the hop, so a change to a
// body is a type error on both sides, and "go to definition" crosses the hop.
//
// The data path: collect --handoff--> dispatch --forward--> push node --socket--> client,
// and back: push node --acks / delivered / unacked--> collect.
import { z } from 'zod';
import { userIdSchema } from './user-id.js';

/** Header that carries INTERNAL_SECRET on every internal hop. */
export const INTERNAL_SECRET_HEADER = 'x-internal-secret';

/** The most ids one internal request may carry. */
export const MAX_IDS_PER_REQUEST = 100_000;

/** One POST route between services: where it lives, who may call it, and its bodies. */
export interface Hop<Req, Res> {
  readonly path: string;
  /** internal: only peers holding INTERNAL_SECRET; public: anyone (the body says who). */
  readonly access: 'internal' | 'public';
  readonly request: z.ZodType<Req>;
  readonly response: z.ZodType<Res>;
  /** The largest body it takes, when far below the service's (MAX_BODY_BYTES, or 16 times
   *  it for internal hops): a public hop anyone may call must not let anyone hold that much. */
  readonly maxBodyBytes?: number;
}

function hop<Req, Res>(
  path: string,
  access: Hop<Req, Res>['access'],
  request: z.ZodType<Req>,
  response: z.ZodType<Res>,
  maxBodyBytes?: number,
): Hop<Req, Res> {
  return { path, access, request, response, maxBodyBytes };
}

/** A message as it travels between services and to the socket. */
/** A message on its way to its user's sockets. */
export const envelopeSchema = z.object({
  id: z.string(),
  to: z.string(),
  /** ISO-8601 */
  createdAt: z.string(),
  /** The socket frame's text (`messageFrameText`), built once by collect: dispatch and the
   *  push nodes never parse the payload or serialize it again. */
  frame: z.string(),
  /** Set when the message was pushed before and its ack is overdue (status `delivered`):
   *  a push node pushes it even to a socket whose replay had it. */
  redelivery: z.literal(true).optional(),
});
export type Envelope = z.infer<typeof envelopeSchema>;

const envelopes = z.object({ messages: z.array(envelopeSchema) });
const ids = z.array(z.string()).max(MAX_IDS_PER_REQUEST);

/** collect → dispatch: route these stored messages to their users' nodes. */
export const handoffHop = hop(
  '/internal/handoff',
  'internal',
  envelopes,
  z.object({
    /** Ids that reached at least one socket of their user. */
    delivered: ids,
    /** The user has no live route (or its nodes have no socket of the user): wait for a
     *  connect. */
    unrouted: ids,
    /** Ids the user's sockets had just got from their replay, which reported them itself
     *  (`deliveredHop`): nothing to record, or each push would count twice. Optional: a
     *  dispatch of an earlier version does not send it. Ids in no list could not be handed
     *  to a node: collect retries them. */
    replayed: ids.optional(),
  }),
);

/** dispatch → push node: push these messages to the sockets of their users here. */
export const forwardHop = hop(
  '/internal/forward',
  'internal',
  envelopes,
  z.object({
    /** Ids pushed (or queued behind a replay) to at least one socket of their user here. */
    delivered: ids,
    /** Ids not pushed again: a socket's replay had just pushed them, and reported them
     *  itself. Optional: a push node of an earlier version does not send it. */
    replayed: ids.optional(),
  }),
);

/** push node → collect: a page of a user's messages not acked yet, in store order
 *  (createdAt, then id), those after the envelope `after` when given (the replay). */
export const unackedHop = hop(
  '/internal/unacked',
  'internal',
  z.object({
    userId: userIdSchema,
    limit: z.number().int().min(1).max(10_000),
    after: z.object({ id: z.string().max(128), createdAt: z.iso.datetime() }).optional(),
  }),
  envelopes,
);

/** The most users one `unackedFirstPagesHop` request names. */
export const MAX_USERS_PER_FIRST_PAGES = 256;

/** push node → collect: the first replay page of each of these users, who just connected:
 *  one request for a burst of connects instead of one per socket. `pages[i]` is userIds[i]'s
 *  page, or null when the answer had no room left for it (ask `unackedHop` for that user). */
export const unackedFirstPagesHop = hop(
  '/internal/unacked-first-pages',
  'internal',
  z.object({
    userIds: z.array(userIdSchema).min(1).max(MAX_USERS_PER_FIRST_PAGES),
    limit: z.number().int().min(1).max(10_000),
  }),
  z.object({ pages: z.array(z.array(envelopeSchema).nullable()) }),
);

/** push node → collect: these messages were pushed to a socket (by a replay). */
export const deliveredHop = hop('/internal/delivered', 'internal', z.object({ ids }), z.object({}));

/** push node → collect: clients acked these messages. */
export const acksHop = hop(
  '/internal/acks',
  'internal',
  z.object({ acks: z.array(z.object({ userId: userIdSchema, ids })) }),
  z.object({ acked: z.number() }),
);

/** The longest token `verifyHop` takes. */
const MAX_TOKEN_LENGTH = 8192;

/** push node → auth: who does this token belong to? Public: a token is its own proof. */
export const verifyHop = hop(
  '/v1/verify',
  'public',
  z.object({ token: z.string().min(1).max(MAX_TOKEN_LENGTH) }),
  z.object({ userId: z.string(), expiresAt: z.string() }),
  2 * MAX_TOKEN_LENGTH,
);

/** What a push node needs to check client tokens itself, as auth publishes it. */
export const tokenKeySchema = z.object({
  algorithm: z.enum(['HS256', 'RS256', 'ES256']),
  issuer: z.string(),
  audience: z.string(),
  /** The public key (PEM, SPKI) for RS256 and ES256; absent for HS256, whose secret never
   *  leaves auth: push nodes then ask auth (`verifyHop`) for every token. */
  publicKey: z.string().optional(),
});
export type TokenKey = z.infer<typeof tokenKeySchema>;

/** push node → auth: the key tokens are checked with (public: it is a public key). */
export const tokenKeyHop = hop('/v1/token-key', 'public', z.object({}), tokenKeySchema, 1024);

/**
 * A request body already serialized as JSON, for a caller that builds it from parts it
 * serialized once (to bound a batch by its bytes without serializing it twice).
 */
export type Serialized<T> = string & { readonly __serializedFrom?: T };

/** `{"messages":[…]}` from envelopes each already serialized. */
export function serializedEnvelopes(
  parts: readonly string[],
): Serialized<{ messages: Envelope[] }> {
  return `{"messages":[${parts.join(',')}]}`;
}

export type RequestOf<H> = H extends Hop<infer Req, unknown> ? Req : never;
export type ResponseOf<H> = H extends Hop<unknown, infer Res> ? Res : never;
