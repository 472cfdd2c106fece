import { fileURLToPath } from "node:url";

import { defineConfig } from "prisma/config";

// Prisma's CLI would download its native schema engine from Prisma's servers, which our
// machines cannot reach: run the Wasm build of the same engine through our bridge instead.
// A machine that has the native engine can set PRISMA_SCHEMA_ENGINE_BINARY itself.
process.env.PRISMA_SCHEMA_ENGINE_BINARY ??= fileURLToPath(
  new URL("./packages/db/bridge/schema-engine.mjs", import.meta.url),
);

const url = process.env.FERRY_DATABASE_URL ?? process.env.DATABASE_URL;

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  // `prisma generate` needs no database, so the URL is only required by the commands that use it.
  ...(url ? { datasource: { url } } : {}),
});
