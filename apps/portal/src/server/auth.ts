// Sign-in for people: better-auth with email and password on our Prisma tables. Sign-up is
// closed; the admin account comes from FERRY_ADMIN_EMAIL / FERRY_ADMIN_PASSWORD at start.
import { createHmac } from "node:crypto";
import { betterAuth } from "better-auth";
import { prismaAdapter } from "better-auth/adapters/prisma";
import { nextCookies } from "better-auth/next-js";
import type { Db } from "@ferry/db";
import { tokenScopes } from "./access.ts";
import { apiTokenHash } from "./api-token.ts";
import { type ProjectQuota, quotaColumns } from "./quota.ts";

/** Build the better-auth instance for a database; its routes are mounted at /api/auth. */
export function createAuth(options: {
  db: Db;
  clusterSecret: string;
  publicUrl: string;
  /** called when a session ends (sign-out), so consoles opened from it close at once */
  onSessionEnded?: (session: { id: string; userId: string }) => Promise<void>;
}) {
  const { onSessionEnded } = options;
  return betterAuth({
    appName: "Ferry",
    baseURL: options.publicUrl,
    basePath: "/api/auth",
    // Derived, so a leaked session-signing key cannot mint console tokens and the reverse.
    secret: createHmac("sha256", options.clusterSecret).update("ferry portal sessions").digest("hex"),
    trustedOrigins: [options.publicUrl],
    database: prismaAdapter(options.db, { provider: "postgresql" }),
    emailAndPassword: { enabled: true, disableSignUp: true, minPasswordLength: 8 },
    user: { additionalFields: { role: { type: "string", defaultValue: "member", input: false } } },
    telemetry: { enabled: false },
    // On in every mode, so tests see the limits production has. Email sign-in is limited per
    // account by sign-in-limit.ts instead (see there why).
    rateLimit: { enabled: true, customRules: { "/sign-in/email": false } },
    plugins: [nextCookies()],
    ...(onSessionEnded ? { databaseHooks: { session: { delete: { after: (session: { id: string; userId: string }) => onSessionEnded(session) } } } } : {}),
  });
}

export type PortalAuth = ReturnType<typeof createAuth>;

/**
 * Create the admin account if it is missing (hashing with better-auth's own password hasher),
 * give it the default organization and project, and register `token` as its API token (every
 * scope, in the default project). Safe to run on every start.
 */
export async function ensureAdmin(
  auth: PortalAuth,
  db: Db,
  admin: { email: string; password: string; token?: string | undefined; defaultQuota: ProjectQuota },
): Promise<{ userId: string; projectId: string }> {
  const context = await auth.$context;
  let user = await db.user.findUnique({ where: { email: admin.email }, select: { id: true, role: true } });
  if (user === null) {
    try {
      const created = await context.internalAdapter.createUser(
        { email: admin.email, name: "Administrator", emailVerified: true, role: "admin" },
        { method: "admin" },
      );
      await context.internalAdapter.linkAccount({
        userId: created.id,
        providerId: "credential",
        accountId: created.id,
        password: await context.password.hash(admin.password),
      });
      user = { id: created.id, role: "admin" };
    } catch (error) {
      // Another portal process created the admin at the same moment: use theirs.
      user = await db.user.findUnique({ where: { email: admin.email }, select: { id: true, role: true } });
      if (user === null) throw error;
    }
  }
  if (user.role !== "admin") await db.user.update({ where: { id: user.id }, data: { role: "admin" } });
  const projectId = await ensureDefaultProject(db, user.id, admin.defaultQuota);
  if (admin.token !== undefined) {
    const tokenHash = apiTokenHash(admin.token);
    await db.apiToken.upsert({
      where: { tokenHash },
      create: { userId: user.id, projectId, scopes: [...tokenScopes], name: "FERRY_ADMIN_TOKEN", tokenHash },
      // A token revoked since stays revoked: rotate FERRY_ADMIN_TOKEN instead.
      update: {},
    });
  }
  return { userId: user.id, projectId };
}

/** The "default" organization (the admin its owner) and its "default" project, so a fresh Ferry can run vms at once. */
async function ensureDefaultProject(db: Db, adminId: string, quota: ProjectQuota): Promise<string> {
  const organization = await db.organization.upsert({ where: { name: "default" }, create: { id: "default", name: "default" }, update: {} });
  await db.membership.upsert({
    where: { organizationId_userId: { organizationId: organization.id, userId: adminId } },
    create: { organizationId: organization.id, userId: adminId, role: "owner" },
    update: {},
  });
  const project = await db.project.upsert({
    where: { organizationId_name: { organizationId: organization.id, name: "default" } },
    create: { organizationId: organization.id, name: "default", ...quotaColumns(quota) },
    update: {},
  });
  return project.id;
}
