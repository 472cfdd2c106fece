// Split brain: a worker that stops heartbeating (here frozen with SIGSTOP, its QEMUs running on)
// is counted gone and its vm placed on another worker. When it comes back it must kill its copy
// of the guest, so that one QEMU runs for the vm, and report nothing over the new owner's row.
import { readFileSync } from "node:fs";
import { join } from "node:path";

import type { Db } from "@ferry/db";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { TestCluster, testServices } from "./test-cluster.ts";

const cluster = new TestCluster("ferry-fencing-", 200);
const { root, workers, qemuProcesses, until, vmIn, vmWhere, createVm, serialText, startWorkerProcess } = cluster;
let db: Db;

const ticks = (text: string) => [...text.matchAll(/ferry-tick (\d+)/g)].map((m) => Number(m[1]));

beforeAll(async () => {
  await cluster.start({ redisUrl: testServices.redisUrl, controller: { reconcileIntervalMs: 300, workerTimeoutMs: 6000 } });
  ({ db } = cluster);
});

afterEach((context) => {
  if (context.task.result?.state === "fail") cluster.failed = true;
});

afterAll(async () => {
  // A frozen worker would never handle the SIGTERM that close() sends it.
  workers.get("w1")?.kill("SIGCONT");
  await cluster.close();
});

describe("a worker counted gone that comes back", () => {
  it("kills its copy of a guest the controller placed on another worker; one QEMU runs, on w2", async () => {
    startWorkerProcess("w1");
    const vmId = (await createVm("fenced")).id;
    await vmWhere(vmId, "running on w1", (vm) => vm.state === "running" && vm.workerId === "w1", 90_000);
    startWorkerProcess("w2");
    await until("w2 heartbeat", async () => (await db.worker.findUnique({ where: { id: "w2" } })) ?? undefined, 60_000);

    // The worker process freezes; its QEMU is another process and runs on.
    workers.get("w1")!.kill("SIGSTOP");
    await vmWhere(vmId, "running on w2", (vm) => vm.state === "running" && vm.workerId === "w2", 90_000);
    expect(qemuProcesses(vmId).filter((line) => line.includes(join(root, "w1")))).toHaveLength(1);
    expect(qemuProcesses(vmId).filter((line) => line.includes(join(root, "w2")))).toHaveLength(1);

    workers.get("w1")!.kill("SIGCONT");
    await until("w1 back online", async () => (await db.worker.findUniqueOrThrow({ where: { id: "w1" } })).status === "online", 30_000);
    await until("w1's copy of the guest killed", async () => qemuProcesses(vmId).length === 1, 30_000);
    expect(qemuProcesses(vmId)[0]).toContain(join(root, "w2"));
    const w1Log = readFileSync(join(root, "w1.log"), "utf8");
    expect(w1Log).toContain(`the controller counted this worker gone and gave the vm up: guest killed (the vm is placed on worker w2 now)`);
    expect(w1Log).toContain(vmId);

    // w2's guest keeps ticking, and the row still says running on w2: w1 reported nothing over it.
    const before = ticks(await serialText(vmId)).length;
    await until("w2's guest ticking on", async () => ticks(await serialText(vmId)).length >= before + 2, 30_000);
    const vm = await vmIn(vmId, "running");
    expect(vm.workerId).toBe("w2");
    expect(qemuProcesses(vmId)).toHaveLength(1);
    const messages = (await db.vmEvent.findMany({ where: { vmId }, orderBy: { at: "asc" } })).map((e) => e.message);
    expect(messages.filter((message) => message.includes("on worker w1") && message.startsWith("running →"))).toEqual([]);
  }, 300_000);
});
