-- AlterTable
ALTER TABLE "worker" ADD COLUMN     "migrationHost" TEXT,
ADD COLUMN     "sharedStorage" TEXT;

-- AlterTable
ALTER TABLE "vm" ADD COLUMN     "guestStateId" TEXT,
ADD COLUMN     "targetWorkerId" TEXT;

-- CreateTable
CREATE TABLE "guest_state" (
    "id" TEXT NOT NULL,
    "vmId" TEXT NOT NULL,
    "workerId" TEXT NOT NULL,
    "storedBytes" BIGINT NOT NULL,
    "cpuModel" TEXT NOT NULL,
    "accelerator" TEXT NOT NULL,
    "memoryMiB" INTEGER NOT NULL,
    "vcpus" INTEGER NOT NULL,
    "profile" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "guest_state_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "guest_state_vmId_createdAt_idx" ON "guest_state"("vmId", "createdAt");

-- AddForeignKey
ALTER TABLE "guest_state" ADD CONSTRAINT "guest_state_vmId_fkey" FOREIGN KEY ("vmId") REFERENCES "vm"("id") ON DELETE CASCADE ON UPDATE CASCADE;
