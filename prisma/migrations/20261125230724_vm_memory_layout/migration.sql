-- AlterTable
ALTER TABLE "guest_state" ADD COLUMN     "memoryLayout" TEXT,
ADD COLUMN     "qemuVersion" TEXT;

-- AlterTable
ALTER TABLE "vm" ADD COLUMN     "memoryLayout" TEXT;

