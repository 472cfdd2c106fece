// Lab classes through the portal (tRPC and REST) on a real PostgreSQL and Redis: what each
// request writes for the controller (time limits and real guests are in
// apps/controller/src/lab-classes.integration.test.ts), every refusal, and the audit log.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Viewer } from "./access.ts";
import { refusal, type Tenant, TestPortal } from "./test-portal.ts";

const portal = new TestPortal();
let tenant: Tenant;
let templateId: string;
const hour = 3_600_000;
const inHours = (h: number) => new Date(Date.now() + h * hour).toISOString();

/** A ready template version of `tenant`'s, as the worker leaves it once the golden point is copied. */
async function readyTemplate(name: string, accelerator = "tcg"): Promise<string> {
  const vm = await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "suspended", desiredState: "suspended" });
  const template = await portal.as(tenant.owner).lab.publish({ vmId: vm.id, name });
  await portal.services.db.labTemplateVersion.update({
    where: { id: template.versions[0]!.id },
    data: { status: "ready", goldenStateId: "golden-1", storedBytes: 1000n, accelerator, publishedAt: new Date() },
  });
  return template.id;
}

function classInput(name: string, more: Record<string, unknown> = {}) {
  return { templateId, name, opensAt: inHours(-1), closesAt: inHours(2), sessionMinutes: 30, totalMinutes: 60, ...more };
}

const students: Viewer[] = [];

beforeAll(async () => {
  await portal.start();
  await portal.addWorker("w1", { memoryMiBFree: 1000, vcpusFree: 4 });
  tenant = await portal.tenant("classes");
  templateId = await readyTemplate("shells");
  for (let i = 0; i < 3; i++) students.push(await portal.person(`student${i}`));
});

afterAll(() => portal.stop());

describe("creating a class", () => {
  it("creates a class over REST with a roster (one spelling per address) and a join code", async () => {
    const { secret } = await portal.token(tenant.owner, tenant.projectId);
    const response = await portal.rest("/classes", {
      method: "POST",
      token: secret,
      body: JSON.stringify({ ...classInput("intro"), instructions: "# Step 1", emails: [students[0]!.email.toUpperCase(), students[0]!.email], joinCode: { expiresAt: inHours(1) } }),
    });
    expect(response.status).toBe(200);
    const created = (await response.json()) as { id: string; status: string; templateVersion: number; joinCode: string; seats: Array<{ email: string; vmId: string | null; secondsLeft: number }> };
    expect(created).toMatchObject({ status: "scheduled", templateVersion: 1, joinCode: expect.stringMatching(/^[A-Z2-9]{8}$/) });
    expect(created.seats).toEqual([expect.objectContaining({ email: students[0]!.email, vmId: null, secondsLeft: 3600 })]);
    const got = await portal.rest(`/classes/${created.id}`, { token: secret });
    expect(((await got.json()) as { seats: unknown[] }).seats).toHaveLength(1);
  });

  it("refuses bad input naming the field, and nothing is created", async () => {
    const owner = portal.as(tenant.owner);
    const before = await portal.services.db.labClass.count();
    expect(await refusal(owner.labClass.create(classInput("bad", { closesAt: inHours(-1) })))).toMatchObject({ code: "invalid_input", message: expect.stringContaining("closesAt: must be after opensAt") });
    expect(await refusal(owner.labClass.create(classInput("bad", { sessionMinutes: 0 })))).toMatchObject({ code: "invalid_input", message: expect.stringContaining("sessionMinutes") });
    expect(await refusal(owner.labClass.create(classInput("bad", { totalMinutes: -5 })))).toMatchObject({ code: "invalid_input", message: expect.stringContaining("totalMinutes") });
    expect(await refusal(owner.labClass.create(classInput("bad", { emails: ["not-an-address"] })))).toMatchObject({ code: "invalid_input", message: expect.stringContaining("emails.0") });
    expect(await refusal(owner.labClass.create(classInput("bad", { joinCode: { expiresAt: inHours(-1) } })))).toMatchObject({ message: expect.stringContaining("joinCode.expiresAt: must be in the future") });
    const tooMany = Array.from({ length: 501 }, (_, i) => `s${i}@school.test`);
    expect(await refusal(owner.labClass.create(classInput("bad", { emails: tooMany })))).toMatchObject({ code: "invalid_input", message: expect.stringContaining("emails: must name at most 500 students") });
    const rest = await portal.rest("/classes", { method: "POST", token: (await portal.token(tenant.owner, tenant.projectId)).secret, body: JSON.stringify(classInput("bad", { opensAt: "tomorrow" })) });
    expect(rest.status).toBe(400);
    expect(((await rest.json()) as { error: { message: string } }).error.message).toContain("opensAt");
    expect(await portal.services.db.labClass.count()).toBe(before);
  });

  it("refuses a template with no ready version, and one no online worker can run (each worker's reason)", async () => {
    const vm = await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "suspended", desiredState: "suspended" });
    const unpublished = await portal.as(tenant.owner).lab.publish({ vmId: vm.id, name: "not-yet" });
    expect(await refusal(portal.as(tenant.owner).labClass.create({ ...classInput("early"), templateId: unpublished.id }))).toMatchObject({
      code: "not_found",
      message: expect.stringContaining("has no published version yet"),
    });
    const kvmOnly = await readyTemplate("kvm-only", "kvm");
    const refused = await refusal(portal.as(tenant.owner).labClass.create({ ...classInput("kvm"), templateId: kvmOnly }));
    expect(refused).toMatchObject({ code: "incompatible_worker", message: expect.stringContaining("w1: ") });
  });

  it("hides a class from other tenants and refuses a viewer's changes", async () => {
    const klass = await portal.as(tenant.owner).labClass.create(classInput("private"));
    const stranger = await portal.tenant("stranger");
    expect(await refusal(portal.as(stranger.owner).labClass.get({ id: klass.id }))).toMatchObject({ code: "not_found" });
    expect((await portal.as(stranger.owner).labClass.list()).items).toEqual([]);
    const viewer = await portal.member(tenant, "viewer");
    expect((await portal.as(viewer).labClass.get({ id: klass.id })).name).toBe("private");
    expect(await refusal(portal.as(viewer).labClass.start({ id: klass.id, prewarm: true }))).toMatchObject({ code: "forbidden" });
  });
});

describe("students", () => {
  let classId: string;

  beforeAll(async () => {
    classId = (await portal.as(tenant.owner).labClass.create(classInput("seats", { emails: [students[0]!.email], joinCode: { expiresAt: inHours(1) } }))).id;
  });

  it("joins with the code (not with a wrong or expired one); a student sees only their own seat", async () => {
    const klass = await portal.services.db.labClass.findUniqueOrThrow({ where: { id: classId } });
    expect(await refusal(portal.as(students[1]!).labSeat.join({ code: "WRONG123" }))).toMatchObject({ code: "not_found", message: expect.stringContaining("check it with your instructor") });
    const joined = await portal.as(students[1]!).labSeat.join({ code: klass.joinCode!.toLowerCase() });
    expect(joined).toMatchObject({ class: { id: classId, name: "seats" }, vmId: null, secondsLeft: 3600, sessionSecondsLeft: 1800 });

    // The invited student's seat is theirs once they sign in with its address.
    const mine = await portal.as(students[0]!).labSeat.mine();
    expect(mine.items.map((seat) => seat.class.name).sort()).toEqual(["intro", "seats"]);
    const invited = mine.items.find((seat) => seat.class.id === classId)!;
    expect((await portal.as(students[0]!).labSeat.get({ id: invited.id })).class.name).toBe("seats");
    expect((await portal.services.db.labSeat.findUniqueOrThrow({ where: { id: invited.id } })).userId).toBe(students[0]!.id);
    expect(await refusal(portal.as(students[1]!).labSeat.get({ id: invited.id }))).toMatchObject({ code: "not_found" });
    expect(await refusal(portal.as(students[1]!).labSeat.start({ id: invited.id }))).toMatchObject({ code: "not_found" });
    expect(await refusal(portal.as(students[2]!).labSeat.console({ id: joined.id }))).toMatchObject({ code: "not_found" });
    expect(await refusal(portal.as(students[2]!).labClass.get({ id: classId }))).toMatchObject({ code: "not_found" });

    await portal.services.db.labClass.update({ where: { id: classId }, data: { joinCodeExpiresAt: new Date(Date.now() - 1000) } });
    expect(await refusal(portal.as(students[2]!).labSeat.join({ code: klass.joinCode! }))).toMatchObject({
      code: "action_refused",
      message: expect.stringContaining("expired at"),
    });
    expect(await portal.services.db.labSeat.count({ where: { classId } })).toBe(2);
  });

  it("refuses a start before the class is started, and in a closed class; makes a late student's clone on first start", async () => {
    const [seat] = (await portal.as(students[1]!).labSeat.mine()).items;
    const requestedAt = async () => (await portal.services.db.labSeat.findUniqueOrThrow({ where: { id: seat!.id } })).startRequestedAt;
    expect(await refusal(portal.as(students[1]!).labSeat.start({ id: seat!.id }))).toMatchObject({ message: expect.stringContaining("has not been started by its instructor yet") });
    expect(await requestedAt()).toBeNull();
    const started = await portal.as(tenant.owner).labClass.start({ id: classId, prewarm: false });
    expect(started.status).toBe("started");
    expect(started.seats.every((s) => s.vmId === null)).toBe(true);

    const beforeStart = new Date();
    const view = await portal.as(students[1]!).labSeat.start({ id: seat!.id });
    expect(view.vmId).not.toBeNull();
    // The student asked for their vm: their session begins once it runs (the controller's pass).
    const asked = await requestedAt();
    expect(asked!.getTime()).toBeGreaterThanOrEqual(beforeStart.getTime());
    const vm = await portal.services.db.vm.findUniqueOrThrow({ where: { id: view.vmId! } });
    expect(vm).toMatchObject({ state: "suspended", desiredState: "running", projectId: tenant.projectId, ownerId: tenant.owner.id, guestStateId: null });
    expect(vm.sourceTemplateVersionId).not.toBeNull();

    // Suspended when the time ran out, a start resumes the same vm.
    await portal.services.db.vm.update({ where: { id: vm.id }, data: { desiredState: "suspended", state: "suspended" } });
    const again = await portal.as(students[1]!).labSeat.start({ id: seat!.id });
    expect(again.vmId).toBe(vm.id);
    expect(await portal.services.db.vm.findUniqueOrThrow({ where: { id: vm.id } })).toMatchObject({ desiredState: "running", operation: "resume", generation: vm.generation + 1 });
    expect(await requestedAt()).toEqual(asked);

    await portal.services.db.labSeat.update({ where: { id: seat!.id }, data: { usedSeconds: 3600 } });
    expect(await refusal(portal.as(students[1]!).labSeat.start({ id: seat!.id }))).toMatchObject({ message: expect.stringContaining("you have used all 60 minutes of class seats") });
    await portal.as(tenant.owner).labClass.extend({ id: classId, seatIds: [seat!.id], minutes: 15 });
    expect((await portal.as(students[1]!).labSeat.get({ id: seat!.id })).secondsLeft).toBe(900);

    await portal.services.db.labClass.update({ where: { id: classId }, data: { closesAt: new Date(Date.now() - 1000) } });
    expect(await refusal(portal.as(students[1]!).labSeat.start({ id: seat!.id }))).toMatchObject({ code: "action_refused", message: expect.stringContaining("closed at") });
    expect(await refusal(portal.as(students[1]!).labSeat.reset({ id: seat!.id }))).toMatchObject({ code: "action_refused", message: expect.stringContaining("closed at") });
    await portal.services.db.labClass.update({ where: { id: classId }, data: { closesAt: new Date(inHours(2)) } });
  });
});

describe("running a class", () => {
  it("refuses a roster the workers cannot host, with the numbers; queues it when whenFull is queue", async () => {
    const emails = Array.from({ length: 5 }, (_, i) => `full-${i}@school.test`);
    const klass = await portal.as(tenant.owner).labClass.create(classInput("full", { emails }));
    const before = await portal.services.db.vm.count();
    const refused = await refusal(portal.as(tenant.owner).labClass.start({ id: klass.id, prewarm: true }));
    expect(refused).toMatchObject({ code: "cluster_full", trpcCode: "CONFLICT" });
    expect(refused.message).toContain("5 students × 256 MiB and 1 vCPU need room for 5 vms, the online workers have room for 3 (w1: 1000 MiB and 4 vCPUs free, room for 3)");
    expect(await portal.services.db.vm.count()).toBe(before);
    expect((await portal.as(tenant.owner).labClass.get({ id: klass.id })).status).toBe("scheduled");

    await portal.as(tenant.owner).labClass.update({ id: klass.id, whenFull: "queue" });
    const started = await portal.as(tenant.owner).labClass.start({ id: klass.id, prewarm: true });
    expect(started.status).toBe("started");
    expect(started.seats.map((seat) => seat.vmState)).toEqual(Array(5).fill("suspended"));
    const vms = await portal.services.db.vm.findMany({ where: { id: { in: started.seats.map((seat) => seat.vmId!) } } });
    expect(vms.every((vm) => vm.desiredState === "running" && vm.name.startsWith("full full-"))).toBe(true);
  });

  it("refuses a start past the project's quota, naming it", async () => {
    const small = await portal.tenant("small", { vms: 2 });
    const vm = await portal.vmRow(small.projectId, small.owner.id, { state: "suspended", desiredState: "suspended" });
    const template = await portal.as(small.owner).lab.publish({ vmId: vm.id, name: "t" });
    await portal.services.db.labTemplateVersion.update({ where: { id: template.versions[0]!.id }, data: { status: "ready", goldenStateId: "g", accelerator: "tcg" } });
    const klass = await portal.as(small.owner).labClass.create({ ...classInput("quota", { emails: ["a@school.test", "b@school.test"], whenFull: "queue" }), templateId: template.id });
    expect(await refusal(portal.as(small.owner).labClass.start({ id: klass.id, prewarm: true }))).toMatchObject({ code: "quota_exceeded", message: expect.stringContaining("vms: 1 used + 2 asked > 2 allowed") });
  });

  it("controls, releases, resets, links and ends; every intervention is in the audit log", async () => {
    const owner = portal.as(tenant.owner);
    const student = students[2]!;
    const klass = await owner.labClass.create(classInput("live", { emails: [student.email, "absent@school.test"], whenFull: "queue" }));
    const started = await owner.labClass.start({ id: klass.id, prewarm: true });
    const seat = started.seats.find((s) => s.email === student.email)!;
    const absent = started.seats.find((s) => s.email === "absent@school.test")!;
    const requestOf = async (seatId: string) => (await portal.services.db.labSeat.findUniqueOrThrow({ where: { id: seatId } })).startRequestedAt;
    // Pre-warmed, both vms run; neither student has asked for theirs, so no session can begin.
    for (const { vmId } of [seat, absent]) await portal.services.db.vm.update({ where: { id: vmId! }, data: { state: "running", workerId: "w1", operation: null } });
    expect(await requestOf(seat.id)).toBeNull();
    expect(await requestOf(absent.id)).toBeNull();
    // The student opens their console: that is their request; a session counted from 10 minutes ago.
    const beforeConsole = new Date();
    expect((await portal.as(student).labSeat.console({ id: seat.id })).url).toContain("/console?token=");
    const asked = await requestOf(seat.id);
    expect(asked!.getTime()).toBeGreaterThanOrEqual(beforeConsole.getTime());
    await portal.services.db.labSeat.update({ where: { id: seat.id }, data: { sessionStartedAt: new Date(Date.now() - 600_000) } });

    const control = await owner.labClass.console({ id: klass.id, seatId: seat.id, mode: "control" });
    expect(control.url).toContain("/console?token=");
    expect(await portal.as(student).labSeat.get({ id: seat.id })).toMatchObject({ controlledBy: { id: tenant.owner.id, name: tenant.owner.name }, sessionSecondsLeft: 1200 });
    expect((await owner.labClass.release({ id: klass.id, seatId: seat.id })).controlledBy).toBeNull();
    expect((await portal.as(student).labSeat.console({ id: seat.id })).url).toContain("/console?token=");

    const reset = await owner.labClass.reset({ id: klass.id });
    expect(reset.notReset).toEqual([]);
    const vms = await portal.services.db.vm.findMany({ where: { id: { in: reset.seats.map((s) => s.vmId!) } } });
    expect(vms.map((vm) => vm.operation).sort()).toEqual(["reset", "reset"]);

    // A student link works once, without signing in.
    const link = await owner.labClass.studentLink({ id: klass.id, seatId: seat.id });
    const token = new URL(link.url).searchParams.get("token")!;
    const opened = await portal.rest("/seats/open-link", { method: "POST", body: JSON.stringify({ token }) });
    expect(opened.status).toBe(200);
    expect(((await opened.json()) as { url: string }).url).toContain("/console?token=");
    const twice = await portal.rest("/seats/open-link", { method: "POST", body: JSON.stringify({ token }) });
    expect(twice.status).toBe(401);
    expect(((await twice.json()) as { error: { message: string } }).error.message).toContain("it was already opened");
    expect(await requestOf(seat.id)).toEqual(asked);
    // A link opened for the absent student is their request.
    const absentLink = new URL((await owner.labClass.studentLink({ id: klass.id, seatId: absent.id })).url).searchParams.get("token")!;
    expect((await portal.rest("/seats/open-link", { method: "POST", body: JSON.stringify({ token: absentLink }) })).status).toBe(200);
    expect(await requestOf(absent.id)).not.toBeNull();

    const ended = await owner.labClass.end({ id: klass.id });
    expect(ended.status).toBe("ended");
    const after = await portal.services.db.labSeat.findUniqueOrThrow({ where: { id: seat.id }, include: { vm: true } });
    expect(after.sessionStartedAt).toBeNull();
    expect(after.startRequestedAt).toBeNull();
    expect(await requestOf(absent.id)).toBeNull();
    expect(after.usedSeconds).toBeGreaterThanOrEqual(600);
    expect(after.vm).toMatchObject({ desiredState: "suspended", operation: "suspend" });
    expect(await refusal(portal.as(student).labSeat.start({ id: seat.id }))).toMatchObject({ message: expect.stringContaining("closed at") });
    expect(await refusal(owner.labClass.extend({ id: klass.id, minutes: 5 }))).toMatchObject({ code: "action_refused", message: expect.stringContaining("ended") });

    const audit = await portal.services.db.auditEntry.findMany({ where: { projectId: tenant.projectId, targetId: { in: [klass.id, seat.id] } }, orderBy: { id: "asc" } });
    expect(audit.map((entry) => `${entry.action} ${entry.outcome}`)).toEqual(
      expect.arrayContaining(["class.start ok", "class.console ok", "class.release ok", "seat.console ok", "class.reset ok", "class.student-link ok", "class.end ok", "seat.start refused", "class.extend refused"]),
    );
    expect(audit.find((entry) => entry.action === "seat.console")?.actorEmail).toBe(student.email);
  });

  it("removes a student: the seat goes, their vm is deleted", async () => {
    const owner = portal.as(tenant.owner);
    const klass = await owner.labClass.create(classInput("roster", { emails: ["stay@school.test", "leave@school.test"], whenFull: "queue" }));
    const started = await owner.labClass.start({ id: klass.id, prewarm: true });
    const leaving = started.seats.find((s) => s.email === "leave@school.test")!;
    const after = await owner.labClass.removeStudent({ id: klass.id, seatId: leaving.id });
    expect(after.seats.map((s) => s.email)).toEqual(["stay@school.test"]);
    expect(await portal.services.db.vm.findUniqueOrThrow({ where: { id: leaving.vmId! } })).toMatchObject({ desiredState: "deleted" });
    const added = await owner.labClass.addStudents({ id: klass.id, emails: ["Late@School.test", "stay@school.test"] });
    expect(added.seats.map((s) => s.email)).toEqual(["late@school.test", "stay@school.test"]);
  });
});
