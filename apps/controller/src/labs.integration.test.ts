// Hosted labs, the foundation: publish a running tiny vm as a lab template version (its guest
// state, copied as the version's golden point), clone it 5 times on two workers that share only
// the database and object storage (folder driver), and check every clone continues from the
// golden point (marker file on /data, counter on from the golden tick, never booted) and that
// clones on one worker share its copy of the golden point's memory (copy-on-write); a reset
// takes a clone back there; the template outlives its source vm; republished from a clone it
// makes version 2, and a damaged golden point is refused naming the part. Then a class of 5
// from version 1: every student's clone continues from the golden point, a session begins only
// for the students who asked for their vm (a pre-warmed vm nobody asked for uses no time), one
// is reset, one's session runs out and it is suspended (the controller's class pass), and
// resumes later where it was; at closesAt every vm of the class is suspended and the class ends.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import type { Db } from "@ferry/db";
import { memoryFileMapping } from "@ferry/engine/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { TestCluster, testServices } from "./test-cluster.ts";
import { typeOnConsole } from "./test-support.ts";

const cluster = new TestCluster("ferry-labs-", 200);
const { root, qemuProcesses, until, vmIn, vmWhere, createVm, request, serialText } = cluster;
const storage = join(root, "guest-states");
let db: Db;

type VmRow = Awaited<ReturnType<Db["vm"]["findUniqueOrThrow"]>>;
type VersionRow = Awaited<ReturnType<Db["labTemplateVersion"]["findUniqueOrThrow"]>>;

const ticks = (text: string) => [...text.matchAll(/ferry-tick (\d+) uptime=([\d.]+)/g)].map((m) => ({ n: Number(m[1]), uptime: Number(m[2]) }));

/**
 * Types `command` on the vm's console until the serial output that follows includes `done`,
 * and returns that output. Typed again (after a newline) when `done` does not show within
 * 20 s: a guest starved of CPU on a loaded host drops USB keyboard events.
 */
async function run(vmId: string, command: string, done: string): Promise<string> {
  const from = (await serialText(vmId)).length;
  for (let attempt = 1; ; attempt++) {
    const vm = await db.vm.findUniqueOrThrow({ where: { id: vmId } });
    await typeOnConsole(join(root, vm.workerId!, "vms", vmId, "vnc.sock"), `\n${command}\n`);
    try {
      return await until(`"${done}" on vm ${vmId}'s serial port`, async () => {
        const text = (await serialText(vmId)).slice(from);
        return text.includes(done) ? text : undefined;
      }, 20_000);
    } catch (error) {
      if (attempt === 3) throw error;
    }
  }
}

/**
 * What the portal does to publish: the template (found by name, or new), its next version
 * `publishing` with the spec fields a clone needs, and the vm asked to suspend (one
 * transaction); then a reconcile job for the vm.
 */
async function publish(vm: VmRow, name: string): Promise<VersionRow> {
  const version = await db.$transaction(async (tx) => {
    const template =
      (await tx.labTemplate.findFirst({ where: { projectId: vm.projectId, name } })) ?? (await tx.labTemplate.create({ data: { name, ownerId: vm.ownerId, projectId: vm.projectId } }));
    const last = await tx.labTemplateVersion.aggregate({ where: { templateId: template.id }, _max: { version: true } });
    const created = await tx.labTemplateVersion.create({
      data: {
        templateId: template.id,
        version: (last._max.version ?? 0) + 1,
        sourceVmId: vm.id,
        image: vm.image,
        vcpus: vm.vcpus,
        memoryMiB: vm.memoryMiB,
        profile: vm.profile,
        cpuModel: vm.cpuModel,
      },
    });
    await tx.vm.update({ where: { id: vm.id }, data: { desiredState: "suspended", generation: { increment: 1 } } });
    return created;
  });
  await cluster.controllerQueue.add("vm.reconcile", { vmId: vm.id });
  return version;
}

/**
 * What the portal does to clone: a vm with the version's spec, suspended at its golden point
 * (no guest state of its own yet) and wanted running, so the controller places its first
 * start like a resume; then a reconcile job. Owner and project as the instructor's vm here.
 */
async function createClone(version: VersionRow, name: string, owner: VmRow): Promise<VmRow> {
  const vm = await db.vm.create({
    data: {
      name,
      ownerId: owner.ownerId,
      projectId: owner.projectId,
      image: version.image,
      vcpus: version.vcpus,
      memoryMiB: version.memoryMiB,
      profile: version.profile,
      cpuModel: version.cpuModel,
      accelerator: version.accelerator,
      state: "suspended",
      desiredState: "running",
      sourceTemplateVersionId: version.id,
    },
  });
  await cluster.controllerQueue.add("vm.reconcile", { vmId: vm.id });
  return vm;
}

/**
 * What the portal does to reset a clone: its own guest state forgotten and a new generation;
 * a clone running on a worker is marked for the controller's vm.reset, any other is
 * suspended at the golden point again. Then a reconcile job.
 */
async function reset(vmId: string): Promise<void> {
  const vm = await db.vm.findUniqueOrThrow({ where: { id: vmId } });
  const runs = vm.state === "running" && vm.workerId !== null;
  const { count } = await db.vm.updateMany({
    where: { id: vm.id, generation: vm.generation },
    data: {
      guestStateId: null,
      desiredState: "running",
      generation: { increment: 1 },
      operation: "reset",
      ...(runs ? {} : { state: "suspended", workerId: null, stateChangedAt: new Date() }),
    },
  });
  expect(count).toBe(1);
  await cluster.controllerQueue.add("vm.reconcile", { vmId });
}

/** QEMU's resident memory (VmRSS) for the vm, in MiB. */
function rssMiB(vmId: string): number {
  const [line] = qemuProcesses(vmId);
  const status = readFileSync(`/proc/${line!.trim().split(/\s+/)[0]}/status`, "utf8");
  return Number(status.match(/VmRSS:\s+(\d+) kB/)![1]) / 1024;
}

beforeAll(async () => {
  await cluster.start({ redisUrl: testServices.redisUrl, controller: { reconcileIntervalMs: 300, workerTimeoutMs: 6000 } });
  ({ db } = cluster);
  // Each vm keeps only its newest guest state: pruning must never reach a golden point. Four
  // 1-vCPU clones fit on each worker (idle tiny guests share the host's cores). lb bounds each
  // guest's TCG translation cache, as a host of many lab clones would.
  for (const [id, more] of [["la", {}], ["lb", { FERRY_TCG_TB_SIZE_MIB: "16" }]] as const) {
    cluster.startWorkerProcess(id, { FERRY_STORAGE_PATH: storage, FERRY_GUEST_STATES_KEEP: "1", FERRY_GUEST_STATE_SWEEP_MS: "1000", FERRY_WORKER_VCPUS: "4", ...more });
  }
  await until("both workers", async () => (await db.worker.count({ where: { status: "online" } })) === 2);
});

afterEach((context) => {
  if (context.task.result?.state === "fail") cluster.failed = true;
});

afterAll(() => cluster.close());

/** The instructor's counter at the golden point of version 1; the class below starts from there too. */
let goldenTick: number;

describe("lab templates and clones", () => {
  let instructor: VmRow;
  let version: VersionRow;
  const clones: string[] = [];
  let sixth: string;

  it("publishes a running vm: suspended through the normal path, its guest state copied as version 1's golden point", async () => {
    instructor = await createVm("instructor");
    await vmIn(instructor.id, "running");
    await until("a few ticks", async () => ticks(await serialText(instructor.id)).length >= 2);
    await run(instructor.id, "echo lab-note-content >/data/labnote; sync; echo labnote-written >/dev/ttyS0", "labnote-written");

    const asked = await publish(instructor, "intro-to-shells");
    expect(asked).toMatchObject({ version: 1, status: "publishing" });
    version = await until("version 1 ready", async () => {
      const row = await db.labTemplateVersion.findUniqueOrThrow({ where: { id: asked.id } });
      if (row.status === "failed") throw new Error(`publishing failed: ${row.statusReason}`);
      return row.status === "ready" ? row : undefined;
    }, 120_000);
    const suspended = await db.vm.findUniqueOrThrow({ where: { id: instructor.id } });
    expect(suspended.state).toBe("suspended");
    expect(version).toMatchObject({ sourceGuestStateId: suspended.guestStateId, cpuModel: "qemu64", accelerator: "tcg", memoryMiB: 256, vcpus: 1, image: "tiny" });
    // The QEMU that saved it, as its guest state row says: placement of clones goes by it.
    const saved = await db.guestState.findUniqueOrThrow({ where: { id: suspended.guestStateId! } });
    expect(saved.qemuVersion).toMatch(/^\d+\.\d+/);
    expect(version).toMatchObject({ qemuVersion: saved.qemuVersion, memoryLayout: saved.memoryLayout });
    expect(version.storedBytes).toBeGreaterThan(0n);
    // Copied under the version's own name, beside (not inside) the vm's guest states.
    expect(existsSync(join(storage, "guest-states", `lab-${version.id}`, version.goldenStateId!, "manifest.json"))).toBe(true);
    goldenTick = ticks(await serialText(instructor.id)).at(-1)!.n;
  });

  it("clones it 5 times on both workers: each continues from the golden point with the marker file, never booting", async () => {
    const asked = Date.now();
    for (let i = 1; i <= 5; i++) clones.push((await createClone(version, `student-${i}`, instructor)).id);
    const running = await Promise.all(clones.map((id) => vmIn(id, "running", 180_000)));
    const readyMs = Date.now() - asked;
    expect(new Set(running.map((vm) => vm.workerId))).toEqual(new Set(["la", "lb"]));
    // Each worker fetched the golden point once and keeps it for its next clones.
    for (const worker of ["la", "lb"]) {
      expect(existsSync(join(root, worker, "golden-points", `lab-${version.id}-${version.goldenStateId}`, "memory"))).toBe(true);
    }

    for (const id of clones) {
      const first = await until(`a tick of clone ${id}`, async () => ticks(await serialText(id))[0]);
      // The counter goes on from the golden point: not from 0, and the guest never booted.
      expect(first.n).toBeGreaterThanOrEqual(goldenTick);
      expect(first.n).toBeLessThan(goldenTick + 10);
      expect(await serialText(id)).not.toContain("FERRY-BOOT-OK");
      // The file written before publishing is on this clone's own disk (page cache dropped).
      await run(id, "sync; echo 3 >/proc/sys/vm/drop_caches; cat /data/labnote >/dev/ttyS0", "lab-note-content");
    }
    // Each clone writes to its own copy-on-write overlay: a file of one is not on another.
    await run(clones[0]!, "echo only-first >/data/mine; sync; echo first-wrote >/dev/ttyS0", "first-wrote");
    const second = await run(clones[1]!, "cat /data/mine >/dev/ttyS0 2>/dev/ttyS0; echo second-read >/dev/ttyS0", "second-read");
    expect(second).toMatch(/can't open '\/data\/mine': No such file/);
    expect(second).not.toContain("only-first");

    for (const vm of running) {
      expect(qemuProcesses(vm.id)[0]).toContain(vm.workerId === "lb" ? "-accel tcg,tb-size=16" : "-accel tcg ");
    }
    console.log(JSON.stringify({ clones: clones.length, readyMs, rssMiB: running.map((vm) => `${vm.workerId}:${Math.round(rssMiB(vm.id))}`) }));
  }, 300_000);

  it("clones on one worker map its copy of the golden point's memory: untouched pages shared, each clone's writes its own", async () => {
    const rows = await db.vm.findMany({ where: { id: { in: clones } }, select: { id: true, workerId: true } });
    const memoryFile = (worker: string) => join(root, worker, "golden-points", `lab-${version.id}-${version.goldenStateId}`, "shared", "memory.ram");
    const hash = (file: string) => createHash("sha256").update(new Uint8Array(readFileSync(file))).digest("hex");
    const before = { la: hash(memoryFile("la")), lb: hash(memoryFile("lb")) };
    // Every clone writes to its memory (the counter, a file): copy-on-write keeps that out of the file.
    await run(clones[2]!, "echo private-page >/private-page; echo p-written >/dev/ttyS0", "p-written");
    for (const { id, workerId } of rows) {
      const mapping = memoryFileMapping(Number(qemuProcesses(id)[0]!.trim().split(/\s+/)[0]), memoryFile(workerId!));
      const neighbours = rows.filter((row) => row.workerId === workerId).length;
      if (neighbours > 1) {
        expect(mapping.sharedMiB).toBeGreaterThan(4);
        expect(mapping.pssMiB).toBeLessThan(mapping.rssMiB * 0.75);
      }
      expect(mapping.privateMiB).toBeGreaterThan(0);
      expect(mapping.privateMiB).toBeLessThan(128);
    }
    expect({ la: hash(memoryFile("la")), lb: hash(memoryFile("lb")) }).toEqual(before);
  });

  it("resets a running clone to the golden point: counter back, its own file gone, the marker file there", async () => {
    const clone = clones[0]!;
    const before = await serialText(clone);
    const lastBefore = ticks(before).at(-1)!.n;
    expect(lastBefore).toBeGreaterThan(goldenTick + 3);
    await reset(clone);
    const running = await vmWhere(clone, "running again after the reset", (vm) => vm.state === "running" && vm.operation === null);
    expect(running.guestStateId).toBeNull();
    // The counter goes back: the first tick below the clone's last one is the golden point's next.
    const back = await until("the counter back after the reset", async () => ticks((await serialText(clone)).slice(before.length)).find((t) => t.n < lastBefore));
    expect(back.n).toBeGreaterThanOrEqual(goldenTick);
    expect(back.n).toBeLessThan(goldenTick + 10);
    const after = await run(clone, "sync; echo 3 >/proc/sys/vm/drop_caches; cat /data/labnote /data/mine >/dev/ttyS0 2>/dev/ttyS0; echo after-reset >/dev/ttyS0", "after-reset");
    expect(after).toContain("lab-note-content");
    expect(after).toMatch(/can't open '\/data\/mine': No such file/);
    const events = await db.vmEvent.findMany({ where: { vmId: clone }, orderBy: { at: "asc" } });
    expect(events.map((e) => e.message)).toContain(`running → resuming: vm.reset sent to worker ${running.workerId} (back to the golden point)`);
  });

  it("outlives its source vm: after the vm is deleted (and its guest states swept) a 6th clone continues from the golden point", async () => {
    await Promise.all(clones.map((id) => request(id, "deleted")));
    await Promise.all(clones.map((id) => vmIn(id, "deleted")));
    await request(instructor.id, "deleted");
    await vmIn(instructor.id, "deleted");
    await until("the instructor vm's guest states swept", async () => !existsSync(join(storage, "guest-states", instructor.id)));

    sixth = (await createClone(version, "student-6", instructor)).id;
    await vmIn(sixth, "running", 120_000);
    const first = await until("a tick of the 6th clone", async () => ticks(await serialText(sixth))[0]);
    expect(first.n).toBeGreaterThanOrEqual(goldenTick);
    await run(sixth, "sync; echo 3 >/proc/sys/vm/drop_caches; cat /data/labnote >/dev/ttyS0", "lab-note-content");
  });

  it("keeps a clone suspended, run nowhere, while no worker has the QEMU its golden point was saved with or a newer one", async () => {
    await db.labTemplateVersion.update({ where: { id: version.id }, data: { qemuVersion: "99.0.0" } });
    let clone: string | undefined;
    try {
      clone = (await createClone(version, "student-future", instructor)).id;
      const waiting = await vmWhere(clone, "waiting for QEMU 99.0.0", (vm) => (vm.stateReason ?? "").includes("saved with QEMU 99.0.0"));
      expect(waiting).toMatchObject({ state: "suspended", desiredState: "running", workerId: null });
      expect(qemuProcesses(clone)).toHaveLength(0);
    } finally {
      await db.labTemplateVersion.update({ where: { id: version.id }, data: { qemuVersion: version.qemuVersion } });
      if (clone) {
        await request(clone, "deleted");
        await vmIn(clone, "deleted");
      }
    }
  });

  it("republishes from a clone as version 2; a flipped byte in its golden point is refused naming the part, and nothing runs", async () => {
    const asked = await publish(await db.vm.findUniqueOrThrow({ where: { id: sixth } }), "intro-to-shells");
    expect(asked).toMatchObject({ templateId: version.templateId, version: 2 });
    const second = await until("version 2 ready", async () => {
      const row = await db.labTemplateVersion.findUniqueOrThrow({ where: { id: asked.id } });
      if (row.status === "failed") throw new Error(`publishing failed: ${row.statusReason}`);
      return row.status === "ready" ? row : undefined;
    }, 120_000);
    // Fresh: no worker has this golden point cached, so the clone reads it from storage.
    const part = join(storage, "guest-states", `lab-${second.id}`, second.goldenStateId!, "memory", "1");
    const bytes = readFileSync(part);
    bytes[1000] = bytes[1000]! ^ 0xff;
    writeFileSync(part, bytes);
    try {
      const clone = (await createClone(second, "student-7", instructor)).id;
      const refused = await vmWhere(clone, "resume refused", (vm) => vm.state === "suspended" && (vm.stateReason ?? "").startsWith("resume refused"));
      expect(refused.stateReason).toContain("part memory/1 failed its checksum");
      expect(refused.desiredState).toBe("suspended");
      expect(refused.workerId).toBeNull();
      expect(qemuProcesses(clone)).toHaveLength(0);
    } finally {
      bytes[1000] = bytes[1000]! ^ 0xff;
      writeFileSync(part, bytes);
    }
  });
});

describe("a lab class of 5", () => {
  let version: VersionRow;
  let classId: string;
  const seats: Array<{ id: string; vmId: string }> = [];

  /** What the portal's labClass.create and labClass.start (with prewarm) write: the class, a seat per student, a clone per seat. */
  async function startClass(instructorVm: VmRow): Promise<void> {
    const created = await db.labClass.create({
      data: {
        projectId: instructorVm.projectId,
        templateId: version.templateId,
        templateVersionId: version.id,
        name: "shells-101",
        instructorId: instructorVm.ownerId,
        opensAt: new Date(Date.now() - 60_000),
        closesAt: new Date(Date.now() + 3_600_000),
        sessionMinutes: 30,
        totalMinutes: 60,
        status: "started",
        startedAt: new Date(),
      },
    });
    classId = created.id;
    for (let i = 1; i <= 5; i++) {
      const clone = await createClone(version, `shells-101 student-${i}`, instructorVm);
      const seat = await db.labSeat.create({ data: { classId, email: `student-${i}@school.test`, vmId: clone.id } });
      seats.push({ id: seat.id, vmId: clone.id });
    }
  }

  /** What labSeat.start, .console and .openLink write: the student asked for their vm (the first ask of a session is kept). */
  async function studentAsks(seatId: string): Promise<Date> {
    const at = new Date();
    await db.labSeat.updateMany({ where: { id: seatId, startRequestedAt: null }, data: { startRequestedAt: at } });
    return (await db.labSeat.findUniqueOrThrow({ where: { id: seatId } })).startRequestedAt!;
  }

  it("starts: every student's clone continues from the golden point with the marker file; a session begins when its student asks", async () => {
    // The class is taught from version 1; the vms of the tests above are gone or suspended.
    version = await db.labTemplateVersion.findFirstOrThrow({ where: { version: 1, status: "ready" }, orderBy: { createdAt: "asc" } });
    const source = await db.vm.findUniqueOrThrow({ where: { id: version.sourceVmId } });
    for (const vm of await db.vm.findMany({ where: { state: "running" } })) await request(vm.id, "deleted");
    await startClass(source);
    const running = await Promise.all(seats.map((seat) => vmIn(seat.vmId, "running", 180_000)));
    expect(new Set(running.map((vm) => vm.workerId))).toEqual(new Set(["la", "lb"]));
    for (const { vmId } of seats) {
      const first = await until(`a tick of ${vmId}`, async () => ticks(await serialText(vmId))[0]);
      expect(first.n).toBeGreaterThanOrEqual(goldenTick);
      expect(first.n).toBeLessThan(goldenTick + 10);
      expect(await serialText(vmId)).not.toContain("FERRY-BOOT-OK");
      await run(vmId, "sync; echo 3 >/proc/sys/vm/drop_caches; cat /data/labnote >/dev/ttyS0", "lab-note-content");
    }
    // Every vm has run for a while, pre-warmed: none of it is the students' time.
    expect(await db.labSeat.count({ where: { classId, sessionStartedAt: { not: null } } })).toBe(0);
    // Four students come (the fifth never does): each session begins at their request, the vm being already running.
    const asked = new Map<string, Date>();
    for (const seat of seats.slice(0, 4)) asked.set(seat.id, await studentAsks(seat.id));
    const counted = await until("a session on each seat whose student asked", async () => {
      const rows = await db.labSeat.findMany({ where: { id: { in: [...asked.keys()] } } });
      return rows.every((row) => row.sessionStartedAt !== null) ? rows : undefined;
    });
    for (const row of counted) {
      expect(row.sessionStartedAt).toEqual(asked.get(row.id));
      expect(row.usedSeconds).toBe(0);
    }
    // The pass that began those sessions saw the fifth seat's running vm too, and left it uncounted.
    const absent = await db.labSeat.findUniqueOrThrow({ where: { id: seats[4]!.id }, include: { vm: true } });
    expect(absent).toMatchObject({ sessionStartedAt: null, startRequestedAt: null, usedSeconds: 0, vm: { state: "running" } });
  }, 300_000);

  it("resets one student's vm to the golden point", async () => {
    const { vmId } = seats[0]!;
    const before = await serialText(vmId);
    const lastBefore = ticks(before).at(-1)!.n;
    await reset(vmId);
    await vmWhere(vmId, "running again after the reset", (vm) => vm.state === "running" && vm.operation === null);
    const back = await until("the counter back after the reset", async () => ticks((await serialText(vmId)).slice(before.length)).find((t) => t.n < lastBefore));
    expect(back.n).toBeGreaterThanOrEqual(goldenTick);
    expect(back.n).toBeLessThan(goldenTick + 10);
  });

  it("suspends a vm whose session ran out (its time counted), and it resumes later where it was", async () => {
    const { id: seatId, vmId } = seats[1]!;
    // 31 minutes of a 30-minute session, as if the student had been working since.
    await db.labSeat.update({ where: { id: seatId }, data: { sessionStartedAt: new Date(Date.now() - 31 * 60_000) } });
    const suspended = await vmIn(vmId, "suspended", 120_000);
    expect(suspended.desiredState).toBe("suspended");
    expect(suspended.guestStateId).not.toBeNull();
    const seat = await db.labSeat.findUniqueOrThrow({ where: { id: seatId } });
    expect(seat.sessionStartedAt).toBeNull();
    expect(seat.startRequestedAt).toBeNull();
    expect(seat.usedSeconds).toBeGreaterThanOrEqual(31 * 60);
    const events = await db.vmEvent.findMany({ where: { vmId, kind: "action.suspend" } });
    expect(events.map((e) => e.message)).toContain("suspended: student-2@school.test's session of 30 minutes in class shells-101 is over");
    const atSuspend = await serialText(vmId);
    const lastTick = ticks(atSuspend).at(-1)!.n;

    // What labSeat.start writes: wanted running again, and the student's request; it resumes from its own guest state.
    await request(vmId, "running");
    const askedAgain = await studentAsks(seatId);
    await vmIn(vmId, "running", 120_000);
    const next = await until("a tick after the resume", async () => ticks((await serialText(vmId)).slice(atSuspend.length))[0]);
    expect(next.n).toBeGreaterThan(lastTick);
    expect(next.n).toBeLessThan(lastTick + 10);
    expect(await serialText(vmId)).not.toContain("FERRY-BOOT-OK");
    const resumed = await until("a new session", async () => {
      const row = await db.labSeat.findUniqueOrThrow({ where: { id: seatId }, include: { vm: true } });
      return row.sessionStartedAt !== null ? row : undefined;
    });
    // Asked for before it ran again: the session begins when it reached running.
    expect(resumed.sessionStartedAt!.getTime()).toBeGreaterThanOrEqual(askedAgain.getTime());
    expect(resumed.sessionStartedAt).toEqual(resumed.vm!.stateChangedAt);
  }, 300_000);

  it("at closesAt suspends every vm of the class and ends it", async () => {
    await db.labClass.update({ where: { id: classId }, data: { closesAt: new Date() } });
    const suspended = await Promise.all(seats.map((seat) => vmIn(seat.vmId, "suspended", 180_000)));
    expect(suspended.every((vm) => vm.guestStateId !== null && vm.desiredState === "suspended")).toBe(true);
    const ended = await until("the class ended", async () => {
      const row = await db.labClass.findUniqueOrThrow({ where: { id: classId } });
      return row.status === "ended" ? row : undefined;
    });
    expect(ended.endedAt).not.toBeNull();
    expect(await db.labSeat.count({ where: { classId, OR: [{ sessionStartedAt: { not: null } }, { startRequestedAt: { not: null } }] } })).toBe(0);
    for (const seat of seats) expect(qemuProcesses(seat.vmId)).toHaveLength(0);
  }, 300_000);
});
