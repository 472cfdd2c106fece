-- A lab template belongs to the project of the vm its first version was published from,
-- else to the oldest project of an organization its author belongs to.
ALTER TABLE "lab_template" ADD COLUMN     "projectId" TEXT;
UPDATE "lab_template" t SET "projectId" = COALESCE(
  (SELECT v."projectId" FROM "lab_template_version" tv JOIN "vm" v ON v."id" = tv."sourceVmId" WHERE tv."templateId" = t."id" ORDER BY tv."version" LIMIT 1),
  (SELECT p."id" FROM "project" p JOIN "membership" m ON m."organizationId" = p."organizationId" WHERE m."userId" = t."ownerId" ORDER BY p."createdAt" LIMIT 1)
);
ALTER TABLE "lab_template" ALTER COLUMN "projectId" SET NOT NULL;

-- CreateIndex
CREATE UNIQUE INDEX "lab_template_projectId_name_key" ON "lab_template"("projectId", "name");

-- AddForeignKey
ALTER TABLE "lab_template" ADD CONSTRAINT "lab_template_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "project"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
