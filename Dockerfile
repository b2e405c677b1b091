# Jobline in one image; JOBLINE_ROLE chooses what a container runs (api, worker, scheduler or all).

# Dependencies, with the compilers better-sqlite3's native build needs when no prebuilt binary fits.
FROM node:20-bookworm-slim AS deps
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# tsx is a runtime dependency: the sources run as TypeScript, so no build step and no dev dependencies.
RUN npm ci --omit=dev

# The same base image, so the native modules built above match its Node.js; no compilers kept.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY . .
# The data dir (embedded mode's SQLite file, a generated JWT secret) must be writable by the user that runs.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 3000
CMD ["node", "bin/jobline.js", "start"]
