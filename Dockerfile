# syntax=docker/dockerfile:1
#
# Evently: one image for every role.
#
#   docker build -t evently .
#   docker run --rm evently migrate            # one-shot: exits 0 once the schema is current
#   docker run -p 8080:8080 evently api        # or worker | dispatcher | all (the default)
#
# Bun is the `bun` npm package (a devDependency pinned by package-lock.json), so the runtime version
# is the one the tests ran with. The build stages use Node only to run npm; the runtime image
# carries the Bun binary, production node_modules and the TypeScript sources, and no Node or npm.
#
# Targets: `runtime` (default, last stage) and `sink` (the load-test webhook receiver).

# Node only runs npm here; its major must satisfy package.json `engines` (a test checks it).
ARG NODE_VERSION=22
ARG DEBIAN_RELEASE=bookworm

# --- manifests: only the package manifests (and the postinstall patch script they run), so the npm
# layer is rebuilt only when they change ----
FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS manifests
WORKDIR /src
COPY . .
RUN mkdir -p /manifests \
 && cp package.json package-lock.json /manifests/ \
 && cp --parents services/core/db/patch-postgres.mjs /manifests/ \
 && find . -name package.json -not -path './package.json' -not -path '*/node_modules/*' \
      -exec cp --parents {} /manifests/ \;

# --- deps: production dependencies only, exactly as locked ----------------------------------------
FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS deps
WORKDIR /app
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY --from=manifests /manifests/ ./
# --omit=optional leaves out the embedded Postgres (~60 MB of binaries): the image always runs with
# DATABASE_URL set, and a role started without it says so instead of starting a database.
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --omit=optional \
 && rm -rf node_modules/.cache

# --- bun: the Bun binary at the version package-lock.json pins (devDependency `bun`) -------------
# Installed on its own so that the image build never downloads the other devDependencies.
FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS bun
WORKDIR /bun
COPY package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    version="$(node -p "require('./package-lock.json').packages['node_modules/bun'].version")" \
 && npm install --no-save --no-audit --no-fund --prefix /bun/install "bun@${version}" \
 && install -D -m 0755 /bun/install/node_modules/bun/bin/bun.exe /out/bun \
 && test "$(/out/bun --version)" = "${version}"

# --- base: the smallest Debian that runs Bun, with CA roots and an init for signal handling -------
FROM debian:${DEBIAN_RELEASE}-slim AS base
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 evently \
 && useradd --system --uid 10001 --gid evently --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin evently
COPY --from=bun /out/bun /usr/local/bin/bun
WORKDIR /app
# Bun would otherwise try to write a transpiler cache under $HOME; the app tree is read-only.
ENV NODE_ENV=production \
    BUN_RUNTIME_TRANSPILER_CACHE_PATH=0 \
    HOST=0.0.0.0 \
    PORT=8080
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY deploy/docker/healthcheck.ts ./deploy/docker/healthcheck.ts

# --- sink: the load-test webhook receiver (docker-compose profile `loadtest`) ---------------------
FROM base AS sink
# The sink verifies signatures with the product's own signing code.
COPY services ./services
COPY loadtest/sink ./loadtest/sink
USER 10001:10001
ENV PORT=9999
EXPOSE 9999
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bun", "deploy/docker/healthcheck.ts", "/health"]
ENTRYPOINT ["tini", "--", "bun", "loadtest/sink/main.ts"]

# --- runtime: the product (default target) -------------------------------------------------------
FROM base AS runtime
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="evently" \
      org.opencontainers.image.description="Self-hostable webhook delivery: retries, replay and a full audit trail." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# Sources stay owned by root: the evently user can read but not modify them.
COPY services ./services
USER 10001:10001
EXPOSE 8080
# /health means "process alive"; orchestrators probe /ready for readiness (see docker-compose.yml).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["bun", "deploy/docker/healthcheck.ts", "/health"]
# The role is the argument: api | worker | dispatcher | migrate | all.
ENTRYPOINT ["tini", "--", "bun", "services/main.ts"]
CMD ["all"]
