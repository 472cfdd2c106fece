-- AlterTable
ALTER TABLE "lab_template_version" ADD COLUMN     "memoryLayout" TEXT,
ADD COLUMN     "qemuVersion" TEXT;
