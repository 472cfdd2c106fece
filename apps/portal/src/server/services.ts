// The long-lived things procedures use: database, Redis, the controller queue, auth and
// cluster settings. The app builds one set from `env()`; tests build their own.
import { createDb, type Db } from "@ferry/db";
import { queueNames } from "@ferry/jobs";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { RateLimiterRedis } from "rate-limiter-flexible";
import { pino, type Logger } from "pino";
import { revokeAccess } from "./access-revocation.ts";
import { RequestLimiter } from "./request-limiter.ts";
import { createAuth, ensureAdmin, type PortalAuth } from "./auth.ts";
import { followRevocations, TokenViewers } from "./token-viewers.ts";
import { VmViews } from "./vm-views.ts";
import type { ProjectQuota } from "./quota.ts";
import { createSignInLimiter } from "./sign-in-limit.ts";
import { env } from "../env.ts";

export interface PortalSettings {
  databaseUrl: string;
  redisUrl: string;
  queuePrefix: string;
  clusterSecret: string;
  publicUrl: string;
  consolePublicUrl: string;
  cpuModel: string;
  logLevel: string;
  admin: { email: string; password: string; token?: string | undefined };
  /** what a new project may hold */
  defaultQuota: ProjectQuota;
  /** REST requests per minute one API token (or signed-in person) may send */
  apiRateLimitPerMinute: number;
}

export interface PortalServices {
  settings: PortalSettings;
  db: Db;
  redis: Redis;
  controllerQueue: Queue;
  auth: PortalAuth;
  /** REST requests per API token per minute, counted in Redis so every portal process shares the count */
  rateLimiter: RequestLimiter;
  /** email sign-in attempts per account per minute, in Redis */
  signInLimiter: RateLimiterRedis;
  /** API tokens resolved in the last second, forgotten when access is revoked */
  tokenViewers: TokenViewers;
  /** the views of vms listed, kept by row version (vm list) */
  vmViews: VmViews;
  log: Logger;
  close(): Promise<void>;
}

/** Connect everything the portal needs and make sure the admin account exists. */
export async function createPortalServices(settings: PortalSettings): Promise<PortalServices> {
  const db = createDb(settings.databaseUrl);
  const redis = new Redis(settings.redisUrl, { lazyConnect: false });
  const controllerQueue = new Queue(queueNames.controller, { prefix: settings.queuePrefix, connection: new Redis(settings.redisUrl, { maxRetriesPerRequest: null }) });
  const log = pino({ level: settings.logLevel, base: { service: "portal" } });
  const tokenViewers = new TokenViewers();
  const revocations = followRevocations(tokenViewers, redis, settings.queuePrefix, log);
  const auth = createAuth({
    db,
    clusterSecret: settings.clusterSecret,
    publicUrl: settings.publicUrl,
    onSessionEnded: (session) => revokeAccess({ redis, settings, log, tokenViewers }, { userId: session.userId }),
  });
  await ensureAdmin(auth, db, { ...settings.admin, defaultQuota: settings.defaultQuota });
  const rateLimiter = new RequestLimiter(
    new RateLimiterRedis({
      storeClient: redis,
      useRedisPackage: false,
      keyPrefix: `${settings.queuePrefix}:api-rate`,
      points: settings.apiRateLimitPerMinute,
      duration: 60,
    }),
  );
  return {
    settings,
    db,
    redis,
    controllerQueue,
    auth,
    rateLimiter,
    signInLimiter: createSignInLimiter(redis, settings.queuePrefix),
    tokenViewers,
    vmViews: new VmViews(),
    log,
    async close() {
      revocations.disconnect();
      await controllerQueue.close();
      await controllerQueue.disconnect();
      redis.disconnect();
      await db.$disconnect();
    },
  };
}

/** The settings of this portal process, from its environment. */
export function settingsFromEnv(): PortalSettings {
  const e = env();
  return {
    databaseUrl: e.FERRY_DATABASE_URL,
    redisUrl: e.FERRY_REDIS_URL,
    queuePrefix: e.FERRY_QUEUE_PREFIX,
    clusterSecret: e.FERRY_CLUSTER_SECRET,
    publicUrl: e.FERRY_PUBLIC_URL,
    consolePublicUrl: e.FERRY_CONSOLE_PUBLIC_URL,
    cpuModel: e.FERRY_CPU_MODEL,
    logLevel: e.FERRY_LOG_LEVEL,
    admin: { email: e.FERRY_ADMIN_EMAIL, password: e.FERRY_ADMIN_PASSWORD, token: e.FERRY_ADMIN_TOKEN },
    defaultQuota: {
      vcpus: e.FERRY_PROJECT_QUOTA_VCPUS,
      memoryMiB: e.FERRY_PROJECT_QUOTA_MEMORY_MIB,
      vms: e.FERRY_PROJECT_QUOTA_VMS,
      stateBytes: BigInt(e.FERRY_PROJECT_QUOTA_STATE_GIB) * 1024n ** 3n,
    },
    apiRateLimitPerMinute: e.FERRY_API_RATE_LIMIT,
  };
}

// Kept on globalThis because Next's dev server re-evaluates modules on every change and would
// otherwise open a new pool of connections each time.
const holder = globalThis as typeof globalThis & { ferryPortalServices?: Promise<PortalServices> };

/** This process's services, created on first use. */
export function portalServices(): Promise<PortalServices> {
  holder.ferryPortalServices ??= createPortalServices(settingsFromEnv()).catch((error: unknown) => {
    holder.ferryPortalServices = undefined;
    throw error;
  });
  return holder.ferryPortalServices;
}

/** The error body when this process's services cannot be reached (503). */
export function servicesUnavailable(error: unknown): { error: { code: "unavailable"; message: string } } {
  const message = error instanceof Error ? error.message : String(error);
  return { error: { code: "unavailable", message: `The portal cannot reach its services: ${message}` } };
}

/** A route handler's answer from this process's services, or 503 saying why they cannot be reached. */
export async function withPortalServices(respond: (services: PortalServices) => Promise<Response>): Promise<Response> {
  let services: PortalServices;
  try {
    services = await portalServices();
  } catch (error) {
    return Response.json(servicesUnavailable(error), { status: 503 });
  }
  return respond(services);
}
