-- CreateIndex
CREATE INDEX "vm_createdAt_id_idx" ON "vm"("createdAt" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "vm_ownerId_createdAt_id_idx" ON "vm"("ownerId", "createdAt" DESC, "id" DESC);
