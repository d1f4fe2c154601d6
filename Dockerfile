# syntax=docker/dockerfile:1
# push-cluster image: one image for every service. The service is the first argument:
#   docker run --env-file … -e PORT=7101 push-cluster push
# PORT must be set: the HEALTHCHECK below reads it.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: compile TypeScript and copy the Lua scripts to dist/ ---------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/copy-assets.mjs ./scripts/copy-assets.mjs
COPY src ./src
# tsc -p tsconfig.build.json && node scripts/copy-assets.mjs (Lua to dist/core/lua)
RUN npm run build

# ---- runtime: production dependencies and dist/ only, as a non-root user -------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    NODE_OPTIONS=--enable-source-maps
WORKDIR /app
COPY package.json package-lock.json ./
# No dependency needs an install script at run time.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist

# The image's "node" user (uid/gid 1000), given numerically so that Kubernetes'
# runAsNonRoot can verify it. Nothing in /app is writable by it.
USER 1000:1000

EXPOSE 7001 7002 7003 7101

# /health answers 200 when the service is ready, 503 while it drains or a dependency
# is down. Node's own fetch: the slim image has no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.PORT + '/health', { signal: AbortSignal.timeout(2500) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# SIGTERM starts the drain: deregister from Consul, close sockets with 1012, flush acks;
# it finishes within 10 s. Give the container at least 15 s (stop_grace_period,
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["--help"]
