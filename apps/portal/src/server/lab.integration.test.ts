// Lab templates and clones through the portal (tRPC and REST) on a real PostgreSQL and Redis:
// what each request writes for the controller and workers (cluster behaviour is in
// apps/controller/src/labs.integration.test.ts), and every refusal.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refusal, type Tenant, TestPortal } from "./test-portal.ts";

const portal = new TestPortal();
const json = (body: unknown) => ({ method: "POST", body: JSON.stringify(body) });
let tenant: Tenant;

beforeAll(async () => {
  await portal.start();
  await portal.addWorker("w1");
  tenant = await portal.tenant("labs");
});

afterAll(() => portal.stop());

/** What the worker records once the golden point is copied. */
async function markReady(versionId: string, accelerator = "tcg"): Promise<void> {
  await portal.services.db.labTemplateVersion.update({
    where: { id: versionId },
    data: { status: "ready", goldenStateId: "golden-1", storedBytes: 40_000_000n, accelerator, publishedAt: new Date() },
  });
}

describe("lab templates", () => {
  it("publishes a running vm: version 1 publishing, the vm asked to suspend; republishing makes version 2", async () => {
    const instructor = portal.as(tenant.owner);
    const vm = await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "running", desiredState: "running", workerId: "w1" });
    const published = await instructor.lab.publish({ vmId: vm.id, name: "shells" });
    expect(published.versions).toMatchObject([{ version: 1, status: "publishing", sourceVmId: vm.id, image: "tiny", vcpus: 1, memoryMiB: 256, cpuModel: "qemu64" }]);
    const asked = await portal.services.db.vm.findUniqueOrThrow({ where: { id: vm.id } });
    expect(asked).toMatchObject({ desiredState: "suspended", generation: vm.generation + 1, operation: "suspend" });

    // Suspended (as the worker would report it), the same vm publishes version 2 of the same template.
    await portal.services.db.vm.update({ where: { id: vm.id }, data: { state: "suspended", workerId: null } });
    const again = await portal.rest("/templates", { ...json({ vmId: vm.id, name: "shells" }), token: (await portal.token(tenant.owner, tenant.projectId)).secret });
    expect(again.status).toBe(200);
    const body = (await again.json()) as { id: string; versions: Array<{ version: number }> };
    expect(body.id).toBe(published.id);
    expect(body.versions.map((v) => v.version)).toEqual([2, 1]);
    expect((await portal.services.db.vm.findUniqueOrThrow({ where: { id: vm.id } })).generation).toBe(asked.generation);
  });

  it("refuses to publish a vm that is not running or suspended, and anyone else's vm", async () => {
    const stopped = await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "stopped", desiredState: "stopped" });
    expect(await refusal(portal.as(tenant.owner).lab.publish({ vmId: stopped.id, name: "x" }))).toMatchObject({
      code: "action_refused",
      message: expect.stringContaining("it is stopped; publish a running or suspended vm"),
    });
    const stranger = await portal.tenant("stranger");
    expect(await refusal(portal.as(stranger.owner).lab.publish({ vmId: stopped.id, name: "x" }))).toMatchObject({ code: "vm_not_found" });
    expect(await portal.services.db.labTemplate.count({ where: { name: "x" } })).toBe(0);
  });
});

describe("clones", () => {
  let templateId: string;
  let versionId: string;

  beforeAll(async () => {
    const vm = await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "suspended", desiredState: "suspended" });
    const template = await portal.as(tenant.owner).lab.publish({ vmId: vm.id, name: "editors" });
    templateId = template.id;
    versionId = template.versions[0]!.id;
  });

  it("refuses to clone before a version is ready, saying so", async () => {
    expect(await refusal(portal.as(tenant.owner).lab.createInstance({ id: templateId, name: "s1" }))).toMatchObject({
      code: "not_found",
      message: expect.stringContaining("has no published version yet"),
    });
    expect(await refusal(portal.as(tenant.owner).lab.createInstance({ id: templateId, name: "s1", version: 1 }))).toMatchObject({
      code: "action_refused",
      message: expect.stringContaining("version 1 of lab template editors is publishing"),
    });
  });

  it("clones a ready version over REST: a vm suspended at the golden point, wanted running, in the source's project", async () => {
    await markReady(versionId);
    const { secret } = await portal.token(tenant.owner, tenant.projectId);
    const response = await portal.rest(`/templates/${templateId}/instances`, { ...json({ name: "student-1" }), token: secret });
    expect(response.status).toBe(200);
    const clone = (await response.json()) as { id: string };
    const row = await portal.services.db.vm.findUniqueOrThrow({ where: { id: clone.id } });
    expect(row).toMatchObject({
      state: "suspended",
      desiredState: "running",
      guestStateId: null,
      sourceTemplateVersionId: versionId,
      accelerator: "tcg",
      projectId: tenant.projectId,
      image: "tiny",
      memoryMiB: 256,
    });
    const listed = await portal.rest("/templates", { token: secret });
    expect(((await listed.json()) as { items: Array<{ id: string }> }).items.map((t) => t.id)).toContain(templateId);
  });

  it("refuses a golden point no worker can run, naming the reason; nothing is created", async () => {
    const vm = await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "suspended", desiredState: "suspended" });
    const template = await portal.as(tenant.owner).lab.publish({ vmId: vm.id, name: "kvm-only" });
    await markReady(template.versions[0]!.id, "kvm");
    const before = await portal.services.db.vm.count();
    const refused = await refusal(portal.as(tenant.owner).lab.createInstance({ id: template.id, name: "s2" }));
    expect(refused).toMatchObject({ code: "incompatible_worker", message: expect.stringContaining("no worker can run version 1's golden point") });
    expect(refused.message).toContain("w1:");
    expect(await portal.services.db.vm.count()).toBe(before);
  });

  it("hides a template from anyone but its owner", async () => {
    const stranger = await portal.tenant("outsider");
    expect(await refusal(portal.as(stranger.owner).lab.createInstance({ id: templateId, name: "s3" }))).toMatchObject({ code: "not_found" });
    expect((await portal.as(stranger.owner).lab.list()).items).toEqual([]);
  });

  it("resets a clone: a running one is marked for its worker, a stopped one is suspended at the golden point; a plain vm is refused", async () => {
    const owner = portal.as(tenant.owner);
    const running = await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "running", desiredState: "running", workerId: "w1", guestStateId: "own-1", sourceTemplateVersionId: versionId });
    const reset = await owner.lab.reset({ id: running.id });
    expect(reset).toMatchObject({ state: "running", desiredState: "running", operation: "reset", generation: running.generation + 1 });
    expect((await portal.services.db.vm.findUniqueOrThrow({ where: { id: running.id } })).guestStateId).toBeNull();

    const stopped = await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "stopped", desiredState: "stopped", workerId: "w1", guestStateId: "own-2", sourceTemplateVersionId: versionId });
    expect(await owner.lab.reset({ id: stopped.id })).toMatchObject({ state: "suspended", desiredState: "running", workerId: null, operation: "reset" });

    const migrating = await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "migrating", desiredState: "running", workerId: "w1", sourceTemplateVersionId: versionId });
    expect(await refusal(owner.lab.reset({ id: migrating.id }))).toMatchObject({ code: "action_refused", message: expect.stringContaining("while it is migrating") });
    const plain = await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "running", desiredState: "running", workerId: "w1" });
    expect(await refusal(owner.lab.reset({ id: plain.id }))).toMatchObject({ code: "action_refused", message: expect.stringContaining("was not cloned from a lab template") });
  });
});
