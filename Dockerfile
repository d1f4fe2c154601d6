# syntax=docker/dockerfile:1
# push-cluster image: one image for every service. The service is the first argument:
#   docker run --env-file … -e PORT=7101 push-cluster push
# PORT must be set: the HEALTHCHECK below reads it.
#
# Node 24 (LTS, supported until April 2028) on Debian 13 "trixie", slim. The code also
# runs on Node ≥ 20.19, which is what CI tests (README, "Supported versions"). Both
# stages use the same base, so the addon compiled in `build` links against the same
# glibc and Node ABI as the runtime.
ARG NODE_IMAGE=node:24-trixie-slim

# ---- build: compile better-sqlite3 and TypeScript, then keep production dependencies ---
FROM ${NODE_IMAGE} AS build
# better-sqlite3 (the default SQLite store) is a C++ addon compiled by node-gyp at
# install: it needs python3, make and g++. They stay in this stage only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# All dependencies (tsc is a dev dependency); better-sqlite3 built from source, as on a
# development machine, rather than fetched prebuilt.
RUN npm_config_build_from_source=true npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/copy-assets.mjs ./scripts/copy-assets.mjs
COPY src ./src
# tsc -p tsconfig.build.json && node scripts/copy-assets.mjs (Lua to dist/core/lua)
RUN npm run build
# Production dependencies only, keeping the compiled addon; then drop what only the
# compiler needed (SQLite's sources, object files: about 25 MB) and check that the
# addon loads.
RUN npm prune --omit=dev --no-audit --no-fund \
 && cd node_modules/better-sqlite3 \
 && rm -rf deps src build/deps build/Release/obj build/Release/obj.target \
      build/Release/.deps build/Release/sqlite3.a build/Release/test_extension.node \
 && cd /app \
 && node -e "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()" \
 && npm cache clean --force

# ---- runtime: node_modules (with the built addon) and dist/, as a non-root user ------
FROM ${NODE_IMAGE} AS runtime
# --max-semi-space-size=4: V8's young generation capped at 8 MB, so that RSS follows live
# memory rather than the load (src/launcher/node-options.ts; README, "Operating").
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    NODE_OPTIONS="--enable-source-maps --max-semi-space-size=4" \
    SQLITE_PATH=/data/messages.sqlite
WORKDIR /app
COPY package.json package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist

# The SQLite store (used when MONGODB_URL is unset) writes /data/messages.sqlite and its
# -wal and -shm files: mount a volume there. One file serves one collect instance (one
# machine); several collect replicas need MongoDB (docs/deploy.md, "Storage").
# The image's "node" user (uid/gid 1000) owns /data, so a fresh volume inherits it.
RUN mkdir -p /data && chown 1000:1000 /data
VOLUME ["/data"]

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
