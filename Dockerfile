# One image, two entry points: `sigil operator` and `sigil webhook`.
# For users with Docker. `make image` writes the same content as an OCI archive
# without Docker (lib/testing/node/images.ts): Node 24 and the glibc files it
# loads, dist/, production node_modules, the CRDs, user 65532, the same
# environment; that is the image the e2e tests run on a real node.

FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY lib lib
COPY operator operator
COPY webhook webhook
COPY cli cli
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim
ENV NODE_ENV=production
# A small young generation: under a burst of 1,000 certificates the peak RSS is
# 121 MiB with 1 MiB semi-spaces, 127 with 2 and 139 with 8, for the same
# controller CPU (make bench-compare ONLY=sigil SIGIL_NODE_ARGS=...); Node's
# default (16) ran ~100 MiB higher still.
ENV NODE_OPTIONS=--max-semi-space-size=1
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY crds ./crds
USER 65532:65532
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
