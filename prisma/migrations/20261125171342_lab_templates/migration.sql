-- AlterTable
ALTER TABLE "vm" ADD COLUMN     "sourceTemplateVersionId" TEXT;

-- CreateTable
CREATE TABLE "lab_template" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "ownerId" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "lab_template_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "lab_template_version" (
    "id" TEXT NOT NULL,
    "templateId" TEXT NOT NULL,
    "version" INTEGER NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'publishing',
    "statusReason" TEXT,
    "sourceVmId" TEXT NOT NULL,
    "sourceGuestStateId" TEXT,
    "publishWorkerId" TEXT,
    "goldenStateId" TEXT,
    "storedBytes" BIGINT,
    "image" TEXT NOT NULL,
    "vcpus" INTEGER NOT NULL,
    "memoryMiB" INTEGER NOT NULL,
    "profile" TEXT NOT NULL,
    "cpuModel" TEXT NOT NULL,
    "accelerator" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "publishedAt" TIMESTAMP(3),

    CONSTRAINT "lab_template_version_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "lab_template_ownerId_idx" ON "lab_template"("ownerId");

-- CreateIndex
CREATE INDEX "lab_template_version_status_idx" ON "lab_template_version"("status");

-- CreateIndex
CREATE UNIQUE INDEX "lab_template_version_templateId_version_key" ON "lab_template_version"("templateId", "version");

-- AddForeignKey
ALTER TABLE "vm" ADD CONSTRAINT "vm_sourceTemplateVersionId_fkey" FOREIGN KEY ("sourceTemplateVersionId") REFERENCES "lab_template_version"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "lab_template" ADD CONSTRAINT "lab_template_ownerId_fkey" FOREIGN KEY ("ownerId") REFERENCES "user"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "lab_template_version" ADD CONSTRAINT "lab_template_version_templateId_fkey" FOREIGN KEY ("templateId") REFERENCES "lab_template"("id") ON DELETE CASCADE ON UPDATE CASCADE;

