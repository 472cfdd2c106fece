import { PrismaPg } from "@prisma/adapter-pg";

import { PrismaClient } from "./generated/client.ts";

/** Ferry's database client: a PrismaClient on the pure-JS PostgreSQL driver (no native engine). */
export type Db = PrismaClient;

/** Open a client for `databaseUrl` (postgresql://…); call `$disconnect()` when done. */
export function createDb(databaseUrl: string): Db {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: databaseUrl }) });
}
