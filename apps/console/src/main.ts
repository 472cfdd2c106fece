import { createDb } from "@ferry/db";
import { Redis } from "ioredis";
import { pino } from "pino";
import { parseEnv } from "./env.ts";
import { createConsoleGateway } from "./gateway.ts";

const env = parseEnv(process.env);
const log = pino({ level: env.logLevel, base: { service: "console" } });
const db = createDb(env.databaseUrl);
const redis = new Redis(env.redisUrl);
redis.on("error", (error) => log.error({ err: error.message }, "console: redis error"));

const gateway = createConsoleGateway({
  db,
  redis,
  prefix: env.prefix,
  secret: env.clusterSecret,
  allowedOrigins: env.allowedOrigins,
  log,
});
const address = await gateway.listen(env.port, env.host);
log.info({ address, allowedOrigins: env.allowedOrigins }, "console gateway listening");

async function shutdown(signal: string): Promise<void> {
  log.info({ signal }, "console gateway stopping");
  await gateway.close();
  await Promise.allSettled([db.$disconnect(), redis.quit()]);
  process.exit(0);
}
process.once("SIGTERM", () => void shutdown("SIGTERM"));
process.once("SIGINT", () => void shutdown("SIGINT"));
