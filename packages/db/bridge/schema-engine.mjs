#!/usr/bin/env node
// A stand-in for Prisma's native schema engine, which the CLI downloads from Prisma's servers
// (unreachable on our machines). `prisma.config.ts` points PRISMA_SCHEMA_ENGINE_BINARY here.
// The CLI starts it in one of two ways:
//
//   schema-engine --datasource '{"url":…}' cli <can-connect-to-database|create-database|drop-database>
//       one-shot; exit 0 on success, otherwise the error as JSON log lines on stderr.
//   schema-engine --datamodels <schema.prisma>… --datasource '{"url":…,"shadowDatabaseUrl"?:…}'
//       a JSON-RPC 2.0 server, one message per line on stdin/stdout.
//
// Both are answered here: the one-shot commands with `pg`, the RPC methods by the Wasm build of
// the same engine (@prisma/schema-engine-wasm) talking to PostgreSQL through @prisma/adapter-pg.
// Shadow databases (for `migrate dev` and `migrate diff --from-migrations`) are created next to
// the main one as `<database>_shadow_<random>` and dropped before the bridge exits, unless
// prisma.config.ts sets `datasource.shadowDatabaseUrl`. How to create a migration with it:
// packages/db/README.md.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

import { PrismaPg } from "@prisma/adapter-pg";
import { bindMigrationAwareSqlAdapterFactory } from "@prisma/driver-adapter-utils";
import pg from "pg";

const PG_CHAR_OID = 18;
const PG_TEXT_OID = 25;

const { values: args, positionals } = parseArgs({
  options: {
    datamodels: { type: "string", multiple: true },
    datasource: { type: "string" },
    "enabled-preview-features": { type: "string" },
    "extension-types": { type: "string" },
  },
  allowPositionals: true,
});

// 1. One-shot commands ------------------------------------------------------------------------

async function runCliCommand(command, url) {
  if (!url) failCli("P1012", "No datasource URL given. Set FERRY_DATABASE_URL (or DATABASE_URL).");
  const target = parseUrl(url);
  try {
    if (command === "can-connect-to-database") {
      await withClient(target.connectionString, () => undefined);
    } else if (command === "create-database") {
      await withClient(adminUrl(target), async (client) => {
        const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [target.database]);
        if (found.rowCount === 0) await client.query(`CREATE DATABASE ${quoteIdent(target.database)}`);
      });
    } else if (command === "drop-database") {
      await withClient(adminUrl(target), (client) =>
        client.query(`DROP DATABASE IF EXISTS ${quoteIdent(target.database)} WITH (FORCE)`),
      );
    } else {
      failCli("P1000", `schema-engine bridge: unknown cli command "${command}".`);
    }
  } catch (error) {
    // P1003 is "database does not exist": it is what makes the CLI offer to create it.
    const code = error?.code === "3D000" ? "P1003" : "P1001";
    failCli(code, `${error?.message ?? error} (database ${target.database} at ${target.host})`);
  }
  process.exit(0);
}

function failCli(errorCode, message) {
  // The CLI skips the first stderr line and reads the rest as the engine's JSON log.
  process.stderr.write("schema-engine bridge\n");
  process.stderr.write(
    `${JSON.stringify({ level: "ERROR", target: "schema_engine::logger", fields: { error_code: errorCode, message } })}\n`,
  );
  process.exit(1);
}

// 2. JSON-RPC server ----------------------------------------------------------------------------

/**
 * `evaluateDataLoss` and `createMigration` need the schema that prisma/migrations produces. The
 * Wasm engine computes it only through the adapter's shadow database inside
 * `diagnoseMigrationHistory` (which `devDiagnostic` calls), and keeps it in a cache keyed by the
 * list of migrations; on a cache miss these two methods fail with "PostgreSQL shadow DB must be
 * provided through an external factory". `migrate dev` applies every migration before calling
 * them, so diagnosing first caches exactly the list they ask for.
 */
const NEEDS_MIGRATIONS_SCHEMA = new Set(["evaluateDataLoss", "createMigration"]);

async function serveRpc(datamodelPaths, { url, shadowDatabaseUrl }) {
  // `migrate diff` starts the engine without --datamodels; an empty list makes the engine panic.
  const datamodels = datamodelPaths.length > 0 ? datamodelPaths.map((path) => [path, readFileSync(path, "utf8")]) : undefined;
  const adapterFactory = url ? new BridgeAdapterFactory(url, shadowDatabaseUrl) : undefined;
  const engineReady = (async () => {
    if (!adapterFactory) throw new Error("No datasource URL given. Set FERRY_DATABASE_URL (or DATABASE_URL).");
    const { SchemaEngine } = await loadWasmEngine();
    return SchemaEngine.new(
      { datamodels },
      (log) => process.stderr.write(`${log}\n`),
      bindMigrationAwareSqlAdapterFactory(adapterFactory),
    );
  })();
  // Keep the rejection for the first request instead of crashing before the CLI asks anything.
  engineReady.catch(() => undefined);

  let nextPrintId = 1_000_000;
  const send = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);
  const inFlight = new Set();
  const pending = new Set();
  const migrationListsCached = new Set();

  // A panic in the Wasm engine is thrown from a promise callback, not from the awaited call, so
  // it lands here. Answer every open request with it (the CLI prints it as an engine panic)
  // instead of dying silently, which the CLI would take for success.
  process.on("uncaughtException", async (error) => {
    const rpcError = toRpcError(panicMessage(error));
    for (const id of inFlight) send({ jsonrpc: "2.0", id, error: rpcError });
    if (inFlight.size === 0) process.stderr.write(`schema-engine bridge: ${rpcError.message}\n`);
    await adapterFactory?.dropShadowDatabases();
    process.exit(1);
  });

  const cacheMigrationsSchema = async (ready, params) => {
    const key = JSON.stringify(params.migrationsList?.migrationDirectories ?? []);
    if (migrationListsCached.has(key)) return;
    await ready.diagnoseMigrationHistory({
      migrationsList: params.migrationsList,
      optInToShadowDatabase: true,
      filters: params.filters ?? { externalTables: [], externalEnums: [] },
    });
    migrationListsCached.add(key);
  };

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on("line", (line) => {
    if (!line.trim()) return;
    const request = JSON.parse(line);
    // Answers to our own `print` requests carry no method: nothing to do.
    if (request.method === undefined) return;
    inFlight.add(request.id);
    const work = (async () => {
      try {
        const ready = await engineReady;
        if (typeof ready[request.method] !== "function") {
          throw new Error(`schema-engine bridge: method "${request.method}" is not offered by the Wasm engine.`);
        }
        const params = request.params ?? {};
        if (NEEDS_MIGRATIONS_SCHEMA.has(request.method)) await cacheMigrationsSchema(ready, params);
        const result = await ready[request.method](params);
        // The native engine prints `migrate diff` output through a `print` request to the CLI;
        // the Wasm engine returns it instead.
        if (request.method === "diff" && typeof result?.stdout === "string" && result.stdout !== "") {
          send({ jsonrpc: "2.0", id: nextPrintId++, method: "print", params: { content: result.stdout.replace(/\n+$/, "") } });
        }
        send({ jsonrpc: "2.0", id: request.id, result: result ?? {} });
      } catch (error) {
        send({ jsonrpc: "2.0", id: request.id, error: toRpcError(panicMessage(error)) });
      } finally {
        inFlight.delete(request.id);
      }
    })();
    pending.add(work);
    work.finally(() => pending.delete(work));
  });
  lines.on("close", async () => {
    await Promise.allSettled([...pending]);
    // No engine.free(): the process ends here anyway, and after a panic free() itself throws.
    await adapterFactory?.dropShadowDatabases();
    process.exit(0);
  });
}

/** For a Wasm trap, the Rust panic message the engine left in the registry; else the error. */
function panicMessage(error) {
  const registered = globalThis.PRISMA_WASM_PANIC_REGISTRY?.message;
  return error instanceof WebAssembly.RuntimeError && registered ? new Error(registered) : error;
}

function toRpcError(error) {
  // User-facing engine errors arrive as JSON strings carrying `error_code` and `message`.
  let known;
  try {
    known = JSON.parse(error?.message ?? "");
  } catch {
    known = undefined;
  }
  if (known?.error_code) {
    return { code: 4466, message: "An error happened. Check the data field for details.", data: { is_panic: false, message: known.message, error_code: known.error_code, meta: known.meta } };
  }
  let message = String(error?.message ?? error);
  if (message.includes("shadow DB must be provided through an external factory")) {
    message =
      "schema-engine bridge: the Wasm engine could not compute the schema of prisma/migrations, which it only does " +
      "when every migration there is applied to the database. Run `prisma migrate status`, then `prisma migrate deploy` " +
      `(or \`prisma migrate reset\` on a development database) and try again. Engine said: ${message}`;
  }
  const isPanic = /RuntimeError|unreachable/.test(message);
  return { code: 4466, message, data: { is_panic: isPanic, message, error: { message } } };
}

// The package's own entry imports the .wasm file as an ES module, which Node 20 only allows
// behind --experimental-wasm-modules: instantiate it by hand instead.
async function loadWasmEngine() {
  const require = createRequire(import.meta.url);
  const bindingsPath = require.resolve("@prisma/schema-engine-wasm/schema_engine_bg");
  const bindings = await import(bindingsPath);
  globalThis.PRISMA_WASM_PANIC_REGISTRY ??= {
    message: "",
    set_message(message) {
      this.message = `RuntimeError: ${message}`;
    },
  };
  const bytes = readFileSync(bindingsPath.replace(/\.js$/, ".wasm"));
  const { instance } = await WebAssembly.instantiate(bytes, { "./schema_engine_bg.js": bindings });
  bindings.__wbg_set_wasm(instance.exports);
  instance.exports.__wbindgen_start();
  return bindings;
}

// 3. Driver adapter -------------------------------------------------------------------------------

/**
 * @prisma/adapter-pg, with three fixes the migration engine needs: `?schema=` is honoured, the
 * shadow database really is a separate database, and PostgreSQL's one-byte `"char"` type (which
 * the engine's catalog queries return) is read as text instead of failing as unsupported.
 */
class BridgeAdapterFactory {
  provider = "postgres";
  adapterName = "@prisma/adapter-pg";
  /** Shadow databases this process created and has not dropped yet. */
  shadowDatabases = new Set();

  constructor(url, shadowDatabaseUrl) {
    this.main = parseUrl(url);
    this.shadow = shadowDatabaseUrl ? parseUrl(shadowDatabaseUrl) : undefined;
  }

  connect() {
    return adapterFor(this.main).connect();
  }

  async connectToShadowDb() {
    if (this.shadow) {
      // Prisma wipes a configured shadow database before each use; the Wasm engine replays the
      // migrations into it as it is, and would fail on the tables the previous replay left.
      await emptySchema(this.shadow);
      return adapterFor(this.shadow).connect();
    }
    // Named after the main database, so a leftover (the bridge killed mid-command) says whose it is.
    const database = `${this.main.database.slice(0, 30)}_shadow_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
    await withClient(adminUrl(this.main), (client) => client.query(`CREATE DATABASE ${quoteIdent(database)}`));
    this.shadowDatabases.add(database);
    const shadowUrl = new URL(this.main.connectionString);
    shadowUrl.pathname = `/${database}`;
    const adapter = await adapterFor({ ...this.main, connectionString: shadowUrl.toString(), database }).connect();
    const dispose = adapter.dispose.bind(adapter);
    adapter.dispose = async () => {
      await dispose();
      await this.dropShadowDatabase(database);
    };
    return adapter;
  }

  async dropShadowDatabase(database) {
    await withClient(adminUrl(this.main), (client) => client.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`));
    this.shadowDatabases.delete(database);
  }

  /** Drops the shadow databases the engine did not dispose of (it does not on a panic or error). */
  async dropShadowDatabases() {
    await Promise.allSettled([...this.shadowDatabases].map((database) => this.dropShadowDatabase(database)));
  }
}

class CharAsTextPool extends pg.Pool {
  async query(config, values) {
    const result = await super.query(config, values);
    for (const field of result.fields ?? []) {
      if (field.dataTypeID === PG_CHAR_OID) field.dataTypeID = PG_TEXT_OID;
    }
    return result;
  }
}

function adapterFor(target) {
  const options = target.schema ? `-c search_path=${target.schema}` : undefined;
  const pool = new CharAsTextPool({ connectionString: target.connectionString, options });
  return new PrismaPg(pool, { schema: target.schema, disposeExternalPool: true });
}

// 4. Helpers --------------------------------------------------------------------------------------

/** Splits Prisma's `?schema=` off a PostgreSQL URL, which `pg` would not understand. */
function parseUrl(url) {
  const parsed = new URL(url);
  const schema = parsed.searchParams.get("schema") ?? undefined;
  parsed.searchParams.delete("schema");
  return {
    connectionString: parsed.toString(),
    database: decodeURIComponent(parsed.pathname.replace(/^\//, "")) || "postgres",
    host: parsed.host,
    schema,
  };
}

/** The same server, database `postgres`: where CREATE/DROP DATABASE can run. */
function adminUrl(target) {
  const parsed = new URL(target.connectionString);
  parsed.pathname = "/postgres";
  return parsed.toString();
}

async function emptySchema(target) {
  const schema = quoteIdent(target.schema ?? "public");
  try {
    await withClient(target.connectionString, (client) => client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; CREATE SCHEMA ${schema}`));
  } catch (error) {
    throw new Error(
      `schema-engine bridge: could not empty schema ${schema} of the shadow database ${target.database} at ${target.host}: ` +
        `${error?.message ?? error}. Make the user in shadowDatabaseUrl its owner, or remove shadowDatabaseUrl from ` +
        "prisma.config.ts to get a temporary shadow database.",
    );
  }
}

async function withClient(connectionString, action) {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return await action(client);
  } finally {
    await client.end();
  }
}

function quoteIdent(name) {
  return `"${name.replaceAll('"', '""')}"`;
}

// 5. Start ----------------------------------------------------------------------------------------

// Last, so that every class and constant above is initialised before the first request.
const datasource = args.datasource ? JSON.parse(args.datasource) : {};

if (positionals[0] === "cli") {
  await runCliCommand(positionals[1], datasource.url);
} else {
  await serveRpc(args.datamodels ?? [], datasource);
}
