-- CreateTable
CREATE TABLE "lab_class" (
    "id" TEXT NOT NULL,
    "projectId" TEXT NOT NULL,
    "templateId" TEXT NOT NULL,
    "templateVersionId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "instructions" TEXT NOT NULL DEFAULT '',
    "instructorId" TEXT NOT NULL,
    "opensAt" TIMESTAMP(3) NOT NULL,
    "closesAt" TIMESTAMP(3) NOT NULL,
    "sessionMinutes" INTEGER NOT NULL,
    "totalMinutes" INTEGER NOT NULL,
    "joinCode" TEXT,
    "joinCodeExpiresAt" TIMESTAMP(3),
    "status" TEXT NOT NULL DEFAULT 'scheduled',
    "whenFull" TEXT NOT NULL DEFAULT 'refuse',
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "startedAt" TIMESTAMP(3),
    "endedAt" TIMESTAMP(3),

    CONSTRAINT "lab_class_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "lab_seat" (
    "id" TEXT NOT NULL,
    "classId" TEXT NOT NULL,
    "email" TEXT NOT NULL,
    "userId" TEXT,
    "vmId" TEXT,
    "usedSeconds" INTEGER NOT NULL DEFAULT 0,
    "extraMinutes" INTEGER NOT NULL DEFAULT 0,
    "sessionStartedAt" TIMESTAMP(3),
    "controlledById" TEXT,
    "controlledSince" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "lab_seat_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "lab_class_joinCode_key" ON "lab_class"("joinCode");

-- CreateIndex
CREATE INDEX "lab_class_status_idx" ON "lab_class"("status");

-- CreateIndex
CREATE UNIQUE INDEX "lab_class_projectId_name_key" ON "lab_class"("projectId", "name");

-- CreateIndex
CREATE UNIQUE INDEX "lab_seat_vmId_key" ON "lab_seat"("vmId");

-- CreateIndex
CREATE INDEX "lab_seat_userId_idx" ON "lab_seat"("userId");

-- CreateIndex
CREATE UNIQUE INDEX "lab_seat_classId_email_key" ON "lab_seat"("classId", "email");

-- AddForeignKey
ALTER TABLE "lab_class" ADD CONSTRAINT "lab_class_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "project"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "lab_class" ADD CONSTRAINT "lab_class_templateId_fkey" FOREIGN KEY ("templateId") REFERENCES "lab_template"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "lab_class" ADD CONSTRAINT "lab_class_templateVersionId_fkey" FOREIGN KEY ("templateVersionId") REFERENCES "lab_template_version"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "lab_class" ADD CONSTRAINT "lab_class_instructorId_fkey" FOREIGN KEY ("instructorId") REFERENCES "user"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "lab_seat" ADD CONSTRAINT "lab_seat_classId_fkey" FOREIGN KEY ("classId") REFERENCES "lab_class"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "lab_seat" ADD CONSTRAINT "lab_seat_userId_fkey" FOREIGN KEY ("userId") REFERENCES "user"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "lab_seat" ADD CONSTRAINT "lab_seat_vmId_fkey" FOREIGN KEY ("vmId") REFERENCES "vm"("id") ON DELETE SET NULL ON UPDATE CASCADE;

