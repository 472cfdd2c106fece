import { PrismaPg } from "@prisma/adapter-pg";

import { Prisma, PrismaClient } from "./generated/client.ts";

/** Ferry's database client: a PrismaClient on the pure-JS PostgreSQL driver (no native engine). */
export type Db = PrismaClient;

/** Open a client for `databaseUrl` (postgresql://…); call `$disconnect()` when done. */
export function createDb(databaseUrl: string): Db {
  // Prisma's default 2 s wait for a pooled connection turned a burst of 50 creates on one
  // project (each transaction queued on the project's row lock) into 500s on a loaded host.
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: databaseUrl }), transactionOptions: { maxWait: 10_000, timeout: 15_000 } });
}

/** Whether `error` is the database refusing to start a transaction in time: busy, worth a retry. */
export function isDatabaseBusy(error: unknown): boolean {
  return error instanceof Prisma.PrismaClientKnownRequestError && error.code === "P2028";
}
