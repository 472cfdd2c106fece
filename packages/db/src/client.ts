import { createHash } from "node:crypto";

import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";

import { Prisma, PrismaClient } from "./generated/client.ts";

/** Ferry's database client: a PrismaClient on the pure-JS PostgreSQL driver (no native engine). */
export type Db = PrismaClient;

/**
 * Where a client keeps the pg pool under its adapter, for `queryPrepared`. A registered symbol:
 * the portal's server and Next's bundle each load their own copy of this module and share one
 * client, so what one copy stores the other must find.
 */
const poolKey = Symbol.for("@ferry/db.pgPool");

/** Open a client for `databaseUrl` (postgresql://…); call `$disconnect()` when done. */
export function createDb(databaseUrl: string): Db {
  const pool = new pg.Pool({ connectionString: databaseUrl });
  // An idle connection the server dropped (restart, timeout) leaves the pool, which opens a new
  // one for the next query; without a listener its error event would end the process.
  pool.on("error", () => {});
  // Prisma's default 2 s wait for a pooled connection turned a burst of 50 creates on one
  // project (each transaction queued on the project's row lock) into 500s on a loaded host.
  const db = new PrismaClient({ adapter: new PrismaPg(pool, { disposeExternalPool: true }), transactionOptions: { maxWait: 10_000, timeout: 15_000 } });
  Object.defineProperty(db, poolKey, { value: pool });
  return db;
}

/** Statement names by their text: a name stands for one text on every connection. */
const statementNames = new Map<string, string>();

/**
 * The rows of `query` (built with `Prisma.sql`, values as parameters: each text is a statement
 * of its own on every connection, so only a value of a few known ones, such as a page size, may
 * be in the text), run on the pool under `db`'s adapter as a prepared statement: parsed once per
 * connection instead of on every call, and without Prisma's query path. From its sixth run
 * PostgreSQL keeps one plan for it when that costs no more than planning for the values (see the
 * vm list's LIMIT). For the hottest reads only (bench/api, vm list page: 0.55 against 0.34 ms of
 * portal CPU and 0.52 against 0.43 ms of PostgreSQL per query). Rows come as pg reads them:
 * timestamps without time zone are read in the process's zone, so select them as text
 * (`isoTimestampSql`); json as parsed values.
 */
export async function queryPrepared<T>(db: Db, query: Prisma.Sql): Promise<T[]> {
  const pool = (db as Db & { [poolKey]?: pg.Pool })[poolKey];
  if (pool === undefined) throw new Error("queryPrepared needs a client made by createDb (it runs on that client's pool); use db.$queryRaw for other clients.");
  const text = query.text;
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `ferry_${createHash("sha256").update(text).digest("hex").slice(0, 24)}`;
    statementNames.set(text, name);
  }
  const result = await pool.query({ name, text, values: query.values });
  return result.rows as T[];
}

/** A `timestamp` column as the ISO 8601 UTC text `Date#toISOString` gives (Prisma's DateTime columns hold UTC). */
export function isoTimestampSql(column: string): Prisma.Sql {
  return Prisma.raw(`to_char(${column}, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`);
}

/** Whether `error` is the database refusing to start a transaction in time: busy, worth a retry. */
export function isDatabaseBusy(error: unknown): boolean {
  return error instanceof Prisma.PrismaClientKnownRequestError && error.code === "P2028";
}
