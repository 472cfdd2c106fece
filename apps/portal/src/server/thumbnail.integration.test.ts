// The instructor's wall of thumbnails end to end on real services: two tiny guests under
// TCG, the worker's thumbnail loop (in this process) rendering their screens, and the
// portal's thumbnail route on real PostgreSQL and Redis. Only the vm the wall asks for is
// rendered; the other costs its worker nothing.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Engine, loadImage, specForVm, type Vm } from "@ferry/engine";
import { redisKeys } from "@ferry/jobs";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The worker's loop is the route's real counterpart; apps don't import each other, tests may.
import { startThumbnails, type Thumbnails } from "../../../worker/src/thumbnails.ts";
import { type Tenant, TestPortal } from "./test-portal.ts";
import { handleThumbnailRequest } from "./thumbnail.ts";

const portal = new TestPortal();
const dir = mkdtempSync(path.join(tmpdir(), "ferry-thumbnail-it-"));
let engine: Engine;
let thumbnails: Thumbnails;
let tenant: Tenant;
let token: string;
let classId: string;
const seats: Record<"watched" | "unwatched" | "empty", string> = { watched: "", unwatched: "", empty: "" };
const vms: { vmId: string; engineVm: Vm | undefined }[] = [];

function thumbnail(seatId: string, options: { token?: string; classId?: string } = {}): Promise<Response> {
  const headers = new Headers();
  if (options.token !== "") headers.set("authorization", `Bearer ${options.token ?? token}`);
  const inClass = options.classId ?? classId;
  return handleThumbnailRequest(new Request(`http://portal.test/api/classes/${inClass}/seats/${seatId}/thumbnail`, { headers }), portal.services, { classId: inClass, seatId });
}

/** Width and height from a PNG's IHDR chunk. */
function pngSize(bytes: Buffer): [number, number] {
  expect(bytes.subarray(1, 4).toString("latin1")).toBe("PNG");
  return [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
}

beforeAll(async () => {
  await portal.start();
  tenant = await portal.tenant("wall");
  token = (await portal.token(tenant.owner, tenant.projectId)).secret;
  const { db } = portal.services;
  const image = await loadImage(process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images", "tiny");
  engine = await Engine.open({ runDir: path.join(dir, "run"), accelerator: "tcg" });
  const rows = [
    await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "running", desiredState: "running" }),
    await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "running", desiredState: "running" }),
  ];
  const started = await Promise.all(
    rows.map(async (row) => {
      const spec = specForVm({ id: row.id, vcpus: 1, memoryMiB: 256, profile: "standard", cpuModel: "qemu64", image, vmDir: path.join(dir, row.id) });
      const vm = await engine.start({ ...spec, nics: [] }, { bootMarker: image.bootMarker });
      await vm.whenState("running", { timeoutMs: 60_000 });
      // The shell is on the console (the VGA text screen, 720x400) once the guest ticks.
      await vm.waitForSerial(/ferry-tick/, { timeoutMs: 30_000 });
      return vm;
    }),
  );
  rows.forEach((row, i) => vms.push({ vmId: row.id, engineVm: started[i] }));

  const template = await db.labTemplate.create({ data: { name: "wall", ownerId: tenant.owner.id, projectId: tenant.projectId } });
  const version = await db.labTemplateVersion.create({
    data: { templateId: template.id, version: 1, status: "ready", sourceVmId: rows[0]!.id, image: "tiny", vcpus: 1, memoryMiB: 256, profile: "standard", cpuModel: "qemu64" },
  });
  const now = Date.now();
  const labClass = await db.labClass.create({
    data: {
      projectId: tenant.projectId,
      templateId: template.id,
      templateVersionId: version.id,
      name: "wall",
      instructorId: tenant.owner.id,
      opensAt: new Date(now),
      closesAt: new Date(now + 3_600_000),
      sessionMinutes: 30,
      totalMinutes: 60,
      status: "started",
    },
  });
  classId = labClass.id;
  seats.watched = (await db.labSeat.create({ data: { classId, email: "watched@ferry.test", vmId: rows[0]!.id } })).id;
  seats.unwatched = (await db.labSeat.create({ data: { classId, email: "unwatched@ferry.test", vmId: rows[1]!.id } })).id;
  seats.empty = (await db.labSeat.create({ data: { classId, email: "empty@ferry.test" } })).id;

  thumbnails = startThumbnails({ redis: portal.services.redis, prefix: portal.services.settings.queuePrefix, vms: () => vms, log: pino({ level: "silent" }) });
}, 120_000);

afterAll(async () => {
  try {
    await thumbnails?.stop();
    await engine?.shutdown({ graceMs: 0 });
    await portal.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("thumbnails for the instructor's wall", () => {
  it("renders the watched vm within a few seconds and never the unwatched one", async () => {
    const first = await thumbnail(seats.watched);
    expect(first.status).toBe(202);
    expect(first.headers.get("cache-control")).toBe("no-store");
    expect(await first.text()).toBe("The first thumbnail of this vm is being rendered; ask again in a few seconds.");

    let answer = first;
    const deadline = Date.now() + 20_000;
    while (answer.status !== 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      answer = await thumbnail(seats.watched);
    }
    expect(answer.status).toBe(200);
    expect(answer.headers.get("content-type")).toBe("image/png");
    expect(answer.headers.get("cache-control")).toBe("no-store");
    // 320 wide, the screen's proportions kept.
    const [width, height] = pngSize(await vms[0]!.engineVm!.screendump());
    expect(pngSize(Buffer.from(await answer.arrayBuffer()))).toEqual([320, Math.round((height * 320) / width)]);

    // A round that starts now looks at both vms: the unwatched one still has none.
    await thumbnails.renderOnce();
    await thumbnails.renderOnce();
    const unwatchedVm = vms[1]!.vmId;
    expect(await portal.services.redis.exists(redisKeys.vmThumbnail(portal.services.settings.queuePrefix, unwatchedVm))).toBe(0);

    // Asked for once, it is watched, and the next round renders it.
    expect((await thumbnail(seats.unwatched)).status).toBe(202);
    await thumbnails.renderOnce();
    expect(await thumbnails.renderOnce()).toBe(2);
    expect((await thumbnail(seats.unwatched)).status).toBe(200);
  }, 60_000);

  it("says a seat without a vm has none yet", async () => {
    const answer = await thumbnail(seats.empty);
    expect(answer.status).toBe(202);
    expect(await answer.text()).toContain("This seat has no vm yet");
  });

  it("is 404 for another tenant, for a seat of another class, and 401 without credentials", async () => {
    const stranger = await portal.tenant("stranger");
    const strangerToken = (await portal.token(stranger.owner, stranger.projectId)).secret;
    const refused = await thumbnail(seats.watched, { token: strangerToken });
    expect(refused.status).toBe(404);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("not_found");
    expect((await thumbnail(seats.watched, { classId: "another-class" })).status).toBe(404);
    expect((await thumbnail(seats.watched, { token: "" })).status).toBe(401);
  });
});
