import { z } from 'zod';
import type { Config } from '../core/config.js';
import type { ConsulClient } from '../core/consul.js';
import { HttpError, readJson, requireBearer } from '../core/http.js';
import type { Logger } from '../core/logger.js';
import { tokenKeyHop, verifyHop } from '../protocol/hops.js';
import type { TokenResponse } from '../protocol/public-api.js';
import { userIdSchema } from '../protocol/user-id.js';
import { ServiceHost } from '../core/service-host.js';
import { validate } from '../core/validation.js';
import { InvalidToken } from './token-verifier.js';
import { Tokens } from './tokens.js';

/** auth: mints tokens for backends (admin key), verifies them for push nodes, and publishes
 *  the public key that lets push nodes verify them themselves (RS256, ES256). */
export function createAuthService(config: Config, log: Logger, consul: ConsulClient): ServiceHost {
  const host = new ServiceHost({ config, log, consul, probes: {} });
  const tokens = new Tokens(config);
  // Strict: a misspelt field (`ttl`, `expiresIn`) must not mint a token of the default
  // lifetime while its caller believes it asked for a shorter one.
  const tokenRequest = z
    .object({
      userId: userIdSchema,
      ttlSeconds: z.number().int().positive().max(config.TOKEN_MAX_TTL_SECONDS).optional(),
    })
    .strict();

  host.routes.post('/v1/tokens', async (ctx) => {
    requireBearer(ctx, config.secrets.AUTH_ADMIN_KEY, 'AUTH_ADMIN_KEY');
    const body = validate(tokenRequest, await readJson(ctx, config.MAX_BODY_BYTES, host.bodies));
    const { token, expiresAt } = tokens.issue(body.userId, body.ttlSeconds);
    ctx.status = 201;
    ctx.body = { token, expiresAt: expiresAt.toISOString() } satisfies TokenResponse;
  });
  host.handle(verifyHop, ({ token }) => {
    try {
      const claims = tokens.verify(token);
      return { userId: claims.userId, expiresAt: claims.expiresAt.toISOString() };
    } catch (err) {
      if (err instanceof InvalidToken) throw new HttpError(401, 'invalid_token', err.message);
      throw err;
    }
  });
  host.handle(tokenKeyHop, () => tokens.published());
  return host;
}
