// The portal's integration-test harness: real PostgreSQL (a fresh database) and Redis (a
// fresh prefix), the portal's own services on them, and helpers to make tenants, people,
// tokens and workers and to call the procedures (in-process) or the REST API (its handler).
import { randomBytes, randomUUID } from "node:crypto";
import { createTestDatabase, type TestDatabase } from "@ferry/db/testing";
import type { Prisma } from "@ferry/db";
import { TRPCError } from "@trpc/server";
import { expect } from "vitest";
import { type OrgRole, type TokenScope, type Viewer, tokenScopes } from "./access.ts";
import { apiTokenHash } from "./api-token.ts";
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { createPortalServer } from "./http.ts";
import { createCaller } from "./root.ts";
import { createPortalServices, type PortalServices, type PortalSettings } from "./services.ts";
import { toApiError } from "./trpc.ts";

const serverUrl = process.env.FERRY_TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5440/postgres";
const redisUrl = process.env.FERRY_TEST_REDIS_URL ?? "redis://127.0.0.1:6390";

export interface Tenant {
  organizationId: string;
  projectId: string;
  owner: Viewer;
}

export class TestPortal {
  readonly adminToken = `ferry-test-${randomUUID()}`;
  database!: TestDatabase;
  services!: PortalServices;
  /** the cluster admin, signed in */
  admin!: Viewer;
  /** the default project, the admin's */
  defaultProjectId!: string;
  /** the portal's HTTP server on a free port, serving REST (other paths answer 404 where Next would) */
  server!: Server;
  /** where `server` listens, e.g. http://127.0.0.1:41234 */
  baseUrl!: string;

  async start(settings: Partial<PortalSettings> = {}): Promise<this> {
    this.database = await createTestDatabase(serverUrl);
    this.services = await createPortalServices({
      databaseUrl: this.database.url,
      redisUrl,
      queuePrefix: `test-portal-${randomUUID()}`,
      clusterSecret: "integration-test-cluster-secret-0123456789",
      publicUrl: "http://portal.test",
      consolePublicUrl: "ws://console.test:3001",
      cpuModel: "qemu64",
      logLevel: "silent",
      admin: { email: "admin@ferry.test", password: "admin-password-1", token: this.adminToken },
      defaultQuota: { vcpus: 1000, memoryMiB: 1_048_576, vms: 100_000, stateBytes: 1n << 50n },
      apiRateLimitPerMinute: 1_000_000,
      ...settings,
    });
    const row = await this.services.db.user.findUniqueOrThrow({ where: { email: "admin@ferry.test" } });
    this.admin = { id: row.id, email: row.email, name: row.name, role: "admin", token: null, sessionId: null };
    this.defaultProjectId = (await this.services.db.project.findFirstOrThrow({ where: { organizationId: "default", name: "default" } })).id;
    const services = this.services;
    this.server = createPortalServer(async (_request, response) => {
      response.writeHead(404, { "content-type": "text/plain" }).end("not a REST path: Next answers it in the portal");
    }, async () => services);
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.baseUrl = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    if (this.server?.listening) {
      this.server.closeAllConnections();
      await new Promise((resolve) => this.server.close(resolve));
    }
    if (this.services) {
      await this.services.controllerQueue.obliterate({ force: true });
      const keys = await this.services.redis.keys(`${this.services.settings.queuePrefix}:*`);
      if (keys.length > 0) await this.services.redis.del(...keys);
      await this.services.close();
    }
    await this.database?.drop();
  }

  /** The procedures, called as `viewer` from `ip`. */
  as = (viewer: Viewer, ip = "192.0.2.7") => createCaller({ services: this.services, viewer, ip });

  /** One REST request over HTTP to the portal's server. */
  rest = (path: string, init: RequestInit & { token?: string } = {}): Promise<Response> => {
    const headers = new Headers(init.headers);
    if (init.token !== undefined) headers.set("authorization", `Bearer ${init.token}`);
    if (init.body !== undefined && !headers.has("content-type")) headers.set("content-type", "application/json");
    return fetch(`${this.baseUrl}/api/v1${path}`, { ...init, headers });
  };

  /** A person who can sign in, seen as signed in (no token). */
  async person(name: string, role: "admin" | "member" = "member"): Promise<Viewer> {
    const email = `${name}-${randomUUID().slice(0, 8)}@ferry.test`;
    const row = await this.services.db.user.create({ data: { id: randomUUID(), name, email, role } });
    return { id: row.id, email: row.email, name: row.name, role, token: null, sessionId: null };
  }

  /** An organization with one project and its owner. */
  async tenant(name: string, quota: Partial<{ vcpus: number; memoryMiB: number; vms: number; stateBytes: bigint }> = {}): Promise<Tenant> {
    const owner = await this.person(`${name}-owner`);
    const organization = await this.services.db.organization.create({
      data: { name: `${name}-${randomUUID().slice(0, 8)}`, memberships: { create: { userId: owner.id, role: "owner" } } },
    });
    const project = await this.services.db.project.create({
      data: {
        organizationId: organization.id,
        name: `${name}-project`,
        quotaVcpus: quota.vcpus ?? 100,
        quotaMemoryMiB: quota.memoryMiB ?? 102_400,
        quotaVms: quota.vms ?? 1000,
        quotaStateBytes: quota.stateBytes ?? 1n << 40n,
      },
    });
    return { organizationId: organization.id, projectId: project.id, owner };
  }

  /** A new person with `role` in the tenant's organization. */
  async member(tenant: Tenant, role: OrgRole, name = role): Promise<Viewer> {
    const viewer = await this.person(name);
    await this.services.db.membership.create({ data: { organizationId: tenant.organizationId, userId: viewer.id, role } });
    return viewer;
  }

  /** An API token of `viewer` in `projectId`, stored as the portal stores one; returns its secret and the viewer it makes. */
  async token(
    viewer: Viewer,
    projectId: string,
    options: { scopes?: TokenScope[]; expiresAt?: Date; revokedAt?: Date } = {},
  ): Promise<{ secret: string; id: string; viewer: Viewer }> {
    const secret = `ferry_${randomBytes(24).toString("base64url")}`;
    const scopes = options.scopes ?? tokenScopes.filter((scope) => scope !== "cluster:admin");
    const data: Prisma.ApiTokenUncheckedCreateInput = { userId: viewer.id, projectId, name: "test", scopes, tokenHash: apiTokenHash(secret) };
    if (options.expiresAt) data.expiresAt = options.expiresAt;
    if (options.revokedAt) data.revokedAt = options.revokedAt;
    const row = await this.services.db.apiToken.create({ data });
    return { secret, id: row.id, viewer: { ...viewer, token: { id: row.id, projectId, scopes }, sessionId: null } };
  }

  async addWorker(id: string, more: Partial<Prisma.WorkerUncheckedCreateInput> = {}): Promise<void> {
    const now = new Date();
    await this.services.db.worker.create({
      data: {
        id,
        hostname: "host-a",
        consoleAddress: "127.0.0.1:7000",
        vcpusTotal: 4,
        memoryMiBTotal: 4096,
        vcpusFree: 4,
        memoryMiBFree: 4096,
        accelerator: "tcg",
        cpuVendor: "GenuineIntel",
        cpuModelName: "test cpu",
        cpuFlags: [],
        qemuVersion: "7.2.22",
        startedAt: now,
        lastHeartbeatAt: now,
        ...more,
      },
    });
  }

  /** A vm row in a given state, as if the workers had reported it. */
  vmRow(projectId: string, ownerId: string, more: Partial<Prisma.VmUncheckedCreateInput> = {}) {
    return this.services.db.vm.create({
      data: { name: `vm-${randomUUID().slice(0, 8)}`, ownerId, projectId, image: "tiny", vcpus: 1, memoryMiB: 256, profile: "standard", cpuModel: "qemu64", ...more },
    });
  }
}

/** Run `call`, expect it to fail, and return the API error the client would see. */
export async function refusal(call: Promise<unknown>): Promise<{ trpcCode: string; code: string; message: string }> {
  const error = await call.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TRPCError);
  const trpcError = error as TRPCError;
  const api = toApiError(trpcError);
  return { trpcCode: trpcError.code, code: api.code, message: api.message };
}
