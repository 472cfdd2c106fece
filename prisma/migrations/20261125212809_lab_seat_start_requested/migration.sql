-- AlterTable
ALTER TABLE "lab_seat" ADD COLUMN     "startRequestedAt" TIMESTAMP(3);
