import Router from '@koa/router';
import { z } from 'zod';
import type { Config } from '../core/config.js';
import type { ConsulClient } from '../core/consul.js';
import { HttpError, readJson, requireBearer } from '../core/http.js';
import type { Logger } from '../core/logger.js';
import type { TokenResponse, VerifyResponse } from '../core/protocol.js';
import { ServiceHost } from '../core/service-host.js';
import { userIdSchema, validate } from '../core/validation.js';
import { InvalidToken, Tokens } from './tokens.js';

/** auth: mints tokens for backends (admin key) and verifies them for push nodes. */
export function createAuthService(config: Config, log: Logger, consul: ConsulClient): ServiceHost {
  const host = new ServiceHost({ config, log, consul, probes: {} });
  const tokens = new Tokens(config);
  const tokenRequest = z.object({
    userId: userIdSchema,
    ttlSeconds: z.number().int().positive().max(config.TOKEN_MAX_TTL_SECONDS).optional(),
  });
  const verifyRequest = z.object({ token: z.string().min(1).max(8192) });

  const router = new Router();
  router.post('/v1/tokens', async (ctx) => {
    requireBearer(ctx, config.secrets.AUTH_ADMIN_KEY, 'AUTH_ADMIN_KEY');
    const body = validate(tokenRequest, await readJson(ctx, config.MAX_BODY_BYTES));
    const { token, expiresAt } = tokens.issue(body.userId, body.ttlSeconds);
    ctx.status = 201;
    ctx.body = { token, expiresAt: expiresAt.toISOString() } satisfies TokenResponse;
  });
  router.post('/v1/verify', async (ctx) => {
    const body = validate(verifyRequest, await readJson(ctx, config.MAX_BODY_BYTES));
    try {
      const claims = tokens.verify(body.token);
      ctx.body = {
        userId: claims.userId,
        expiresAt: claims.expiresAt.toISOString(),
      } satisfies VerifyResponse;
    } catch (err) {
      if (err instanceof InvalidToken) throw new HttpError(401, 'invalid_token', err.message);
      throw err;
    }
  });
  host.app.use(router.routes()).use(router.allowedMethods());
  return host;
}
