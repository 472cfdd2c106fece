import { fileURLToPath } from "node:url";
import type { NextConfig } from "next";

const config: NextConfig = {
  // The @ferry/* workspaces ship TypeScript sources (with `.ts` import extensions), not builds.
  transpilePackages: ["@ferry/db", "@ferry/engine", "@ferry/jobs", "@ferry/tokens"],
  // Loaded by Node at run time rather than bundled: they open sockets, spawn Lua scripts or
  // read their own files next to their modules. rate-limiter-flexible too: the portal's server
  // (src/main.ts, outside this bundle) and the bundle share one set of services, and a limiter
  // made by one copy of the package throws a RateLimiterRes the other copy's `instanceof` misses.
  serverExternalPackages: ["bullmq", "ioredis", "pg", "@prisma/client", "@prisma/adapter-pg", "pino", "rate-limiter-flexible"],
  // The lockfile lives at the repository root; without this Turbopack guesses and warns.
  turbopack: { root: fileURLToPath(new URL("../..", import.meta.url)) },
  poweredByHeader: false,
};

export default config;
