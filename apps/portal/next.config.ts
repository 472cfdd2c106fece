import { fileURLToPath } from "node:url";
import type { NextConfig } from "next";

const config: NextConfig = {
  // The @ferry/* workspaces ship TypeScript sources (with `.ts` import extensions), not builds.
  transpilePackages: ["@ferry/db", "@ferry/engine", "@ferry/jobs", "@ferry/tokens"],
  // Loaded by Node at run time rather than bundled: they open sockets, spawn Lua scripts or
  // read their own files next to their modules.
  serverExternalPackages: ["bullmq", "ioredis", "pg", "@prisma/client", "@prisma/adapter-pg", "pino"],
  // The lockfile lives at the repository root; without this Turbopack guesses and warns.
  turbopack: { root: fileURLToPath(new URL("../..", import.meta.url)) },
  poweredByHeader: false,
};

export default config;
