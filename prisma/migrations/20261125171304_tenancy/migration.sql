-- CreateTable
CREATE TABLE "organization" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "organization_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "membership" (
    "organizationId" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "membership_pkey" PRIMARY KEY ("organizationId","userId")
);

-- CreateTable
CREATE TABLE "project" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "quotaVcpus" INTEGER NOT NULL,
    "quotaMemoryMiB" INTEGER NOT NULL,
    "quotaVms" INTEGER NOT NULL,
    "quotaStateBytes" BIGINT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "project_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "audit_entry" (
    "id" BIGSERIAL NOT NULL,
    "projectId" TEXT,
    "at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actorUserId" TEXT,
    "actorEmail" TEXT NOT NULL,
    "actorTokenId" TEXT,
    "ip" TEXT,
    "action" TEXT NOT NULL,
    "targetType" TEXT NOT NULL,
    "targetId" TEXT,
    "outcome" TEXT NOT NULL,
    "message" TEXT NOT NULL,

    CONSTRAINT "audit_entry_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "idempotency_record" (
    "principal" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "requestHash" TEXT NOT NULL,
    "response" JSONB,
    "status" INTEGER,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "idempotency_record_pkey" PRIMARY KEY ("principal","key")
);

-- Vms and API tokens made before organizations existed go to a "default" project of a
-- "default" organization whose members are their users (the admin as owner).
INSERT INTO "organization" ("id", "name") SELECT 'default', 'default' WHERE EXISTS (SELECT 1 FROM "user");
INSERT INTO "project" ("id", "organizationId", "name", "quotaVcpus", "quotaMemoryMiB", "quotaVms", "quotaStateBytes")
  SELECT 'default', 'default', 'default', 64, 65536, 100, 107374182400 WHERE EXISTS (SELECT 1 FROM "organization" WHERE "id" = 'default');
INSERT INTO "membership" ("organizationId", "userId", "role")
  SELECT 'default', "id", CASE WHEN "role" = 'admin' THEN 'owner' ELSE 'member' END FROM "user";

-- AlterTable
ALTER TABLE "api_token" ADD COLUMN     "projectId" TEXT,
ADD COLUMN     "scopes" TEXT[];
UPDATE "api_token" SET "projectId" = 'default', "scopes" = ARRAY['vms:read', 'vms:write', 'console', 'project:admin']
  || CASE WHEN EXISTS (SELECT 1 FROM "user" u WHERE u."id" = "api_token"."userId" AND u."role" = 'admin') THEN ARRAY['cluster:admin'] ELSE ARRAY[]::TEXT[] END;
ALTER TABLE "api_token" ALTER COLUMN "projectId" SET NOT NULL;

-- AlterTable
ALTER TABLE "vm" ADD COLUMN     "projectId" TEXT;
UPDATE "vm" SET "projectId" = 'default';
ALTER TABLE "vm" ALTER COLUMN "projectId" SET NOT NULL;

-- CreateIndex
CREATE UNIQUE INDEX "organization_name_key" ON "organization"("name");

-- CreateIndex
CREATE INDEX "membership_userId_idx" ON "membership"("userId");

-- CreateIndex
CREATE UNIQUE INDEX "project_organizationId_name_key" ON "project"("organizationId", "name");

-- CreateIndex
CREATE INDEX "audit_entry_projectId_at_id_idx" ON "audit_entry"("projectId", "at" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "idempotency_record_createdAt_idx" ON "idempotency_record"("createdAt");

-- CreateIndex
CREATE INDEX "api_token_projectId_idx" ON "api_token"("projectId");

-- CreateIndex
CREATE INDEX "vm_projectId_createdAt_id_idx" ON "vm"("projectId", "createdAt" DESC, "id" DESC);

-- AddForeignKey
ALTER TABLE "membership" ADD CONSTRAINT "membership_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "organization"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "membership" ADD CONSTRAINT "membership_userId_fkey" FOREIGN KEY ("userId") REFERENCES "user"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "project" ADD CONSTRAINT "project_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "organization"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "audit_entry" ADD CONSTRAINT "audit_entry_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "project"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "api_token" ADD CONSTRAINT "api_token_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "project"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "vm" ADD CONSTRAINT "vm_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "project"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
