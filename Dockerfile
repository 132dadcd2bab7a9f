# One image, two entry points: `sigil operator` and `sigil webhook`.
# For users with Docker. `make image` writes the same content as an OCI archive
# without Docker (lib/testing/node/images.ts): Node 24 and the glibc files it
# loads, dist/bundle (the code and its production dependencies in one module,
# hack/bundle.ts, and their licenses), sigil/mtls, the CRDs, user 65532, the
# same environment; that is the image the e2e tests run on a real node.

FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY lib lib
COPY operator operator
COPY webhook webhook
COPY cli cli
COPY hack/bundle.ts hack/bundle.ts
RUN npm run build

FROM node:24-bookworm-slim
ENV NODE_ENV=production
# A smaller young generation than Node's default (16 MiB semi-spaces), which let the heap run
# ~100 MiB higher under load. The chart sets each component's own flags (operator.nodeArgs:
# 1 MiB and lite mode; webhook.nodeArgs: 8 MiB, for admission throughput, and lite mode) and a
# heap size from each container's memory limit.
ENV NODE_OPTIONS=--max-semi-space-size=8
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/dist/bundle ./dist/bundle
# sigil/mtls, for services on this image, where package.json's exports name it.
COPY --from=build /src/dist/bundle/mtls.mjs ./dist/lib/mtls/index.js
COPY crds ./crds
USER 65532:65532
ENTRYPOINT ["node", "/app/dist/bundle/sigil.mjs"]
