import { describe, expect, it } from "vitest";
import type { VmView } from "./routers/vm.ts";
import { type VmRead, VmViews } from "./vm-views.ts";

const view = (id: string, state = "stopped"): VmView => ({
  id,
  name: `vm-${id}`,
  ownerId: "u1",
  projectId: "p1",
  image: "tiny",
  vcpus: 1,
  memoryMiB: 256,
  profile: "standard",
  cpuModel: "qemu64",
  state,
  desiredState: state,
  stateReason: null,
  workerId: null,
  targetWorkerId: null,
  accelerator: null,
  generation: 0,
  operation: null,
  progress: state === "running" ? { done: 1, total: 2 } : null,
  createdAt: "2026-11-26T00:00:00.000Z",
  stateChangedAt: "2026-11-26T00:00:00.000Z",
});

/** A table of rows by id with their versions, and the ids each read asked for. */
function table(rows: Record<string, { version: string; state?: string }>) {
  const reads: string[][] = [];
  return {
    rows,
    reads,
    read: async (ids: string[]) => {
      reads.push(ids);
      return ids.flatMap((id) => (rows[id] ? [{ version: rows[id].version, view: view(id, rows[id].state) }] : []));
    },
  };
}

/** `read`, held back until `release()`: for reads in flight while another page asks. */
function later(read: (ids: string[]) => Promise<VmRead[]>) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  return { release: () => release(), read: async (ids: string[]) => (await released, read(ids)) };
}

describe("VmViews", () => {
  it("reads a page's rows once and reuses the views while their versions stay the same", async () => {
    const views = new VmViews();
    const db = table({ a: { version: "10" }, b: { version: "11" }, c: { version: "10" } });
    const page = [
      { id: "c", version: "10" },
      { id: "a", version: "10" },
      { id: "b", version: "11" },
    ];
    expect((await views.of(page, db.read)).map((v) => v.id)).toEqual(["c", "a", "b"]);
    expect((await views.of(page, db.read)).map((v) => v.id)).toEqual(["c", "a", "b"]);
    expect(db.reads).toEqual([["c", "a", "b"]]);
  });

  it("reads again only the vms whose row version changed, and shows them as they are now", async () => {
    const views = new VmViews();
    const db = table({ a: { version: "10" }, b: { version: "10" } });
    await views.of([{ id: "a", version: "10" }, { id: "b", version: "10" }], db.read);
    db.rows.b = { version: "12", state: "running" };
    const page = await views.of([{ id: "a", version: "10" }, { id: "b", version: "12" }], db.read);
    expect(page.map((v) => [v.id, v.state])).toEqual([["a", "stopped"], ["b", "running"]]);
    expect(db.reads).toEqual([["a", "b"], ["b"]]);
  });

  it("leaves out a vm whose row is gone by the time it is read", async () => {
    const views = new VmViews();
    const db = table({ a: { version: "10" } });
    expect((await views.of([{ id: "gone", version: "9" }, { id: "a", version: "10" }], db.read)).map((v) => v.id)).toEqual(["a"]);
  });

  it("keeps at most its capacity, the oldest kept going first", async () => {
    const views = new VmViews(2);
    const db = table({ a: { version: "1" }, b: { version: "1" }, c: { version: "1" } });
    for (const id of ["a", "b", "c"]) await views.of([{ id, version: "1" }], db.read);
    await views.of([{ id: "b", version: "1" }, { id: "c", version: "1" }, { id: "a", version: "1" }], db.read);
    expect(db.reads).toEqual([["a"], ["b"], ["c"], ["a"]]);
  });

  it("forgets every view after its lifetime, before a reused transaction id could match an old version", async () => {
    let now = 0;
    const views = new VmViews(100, 1000, () => now);
    const db = table({ a: { version: "1" } });
    await views.of([{ id: "a", version: "1" }], db.read);
    now = 999;
    await views.of([{ id: "a", version: "1" }], db.read);
    now = 1000;
    await views.of([{ id: "a", version: "1" }], db.read);
    expect(db.reads).toEqual([["a"], ["a"]]);
  });

  it("expires each view on its own, so vms listed together are not all read again at once", async () => {
    let now = 0;
    const views = new VmViews(100, 1000, () => now);
    const db = table({ a: { version: "1" }, b: { version: "1" } });
    await views.of([{ id: "a", version: "1" }], db.read);
    now = 500;
    await views.of([{ id: "b", version: "1" }], db.read);
    now = 1000;
    await views.of([{ id: "a", version: "1" }, { id: "b", version: "1" }], db.read);
    expect(db.reads).toEqual([["a"], ["b"], ["a"]]);
  });

  it("reads a vm once when pages want it at the same time", async () => {
    const views = new VmViews();
    const db = table({ a: { version: "1" }, b: { version: "1" }, c: { version: "1" } });
    const slow = later(db.read);
    const first = views.of([{ id: "a", version: "1" }, { id: "b", version: "1" }], slow.read);
    const second = views.of([{ id: "b", version: "1" }, { id: "c", version: "1" }, { id: "a", version: "1" }], slow.read);
    slow.release();
    expect((await first).map((v) => v.id)).toEqual(["a", "b"]);
    expect((await second).map((v) => v.id)).toEqual(["b", "c", "a"]);
    expect(db.reads).toEqual([["a", "b"], ["c"]]);
  });

  it("reads again itself what a shared read failed to give, or gave older than its page saw", async () => {
    const views = new VmViews();
    const db = table({ a: { version: "1" }, b: { version: "1" } });
    const failing = later(async () => Promise.reject(new Error("connection reset")));
    const first = views.of([{ id: "a", version: "1" }], failing.read);
    const second = views.of([{ id: "a", version: "1" }], db.read);
    failing.release();
    await expect(first).rejects.toThrow("connection reset");
    expect((await second).map((v) => v.id)).toEqual(["a"]);

    // A read begun before b changed answers with b as it was; the page read after the change waits on it.
    const stale = later(async (ids: string[]) => ids.map((id) => ({ version: "1", view: view(id) })));
    const older = views.of([{ id: "b", version: "1" }], stale.read);
    db.rows.b = { version: "2", state: "running" };
    const newer = views.of([{ id: "b", version: "2" }], db.read);
    stale.release();
    expect((await older).map((v) => v.state)).toEqual(["stopped"]);
    expect((await newer).map((v) => v.state)).toEqual(["running"]);
    expect(db.reads).toEqual([["a"], ["b"]]);
  });

  it("hands out views nobody can change, as every request that lists the vm shares them", async () => {
    const views = new VmViews();
    const [shared] = await views.of([{ id: "a", version: "1" }], table({ a: { version: "1", state: "running" } }).read);
    expect(() => Object.assign(shared!, { state: "deleted" })).toThrow(TypeError);
    expect(() => Object.assign(shared!.progress!, { done: 2 })).toThrow(TypeError);
  });
});

describe("VmViews.pageJson", () => {
  it("writes a page exactly as JSON.stringify does, from the texts of kept views and of any other", async () => {
    const views = new VmViews();
    const kept = await views.of([{ id: "a", version: "1" }, { id: "b", version: "1" }], table({ a: { version: "1", state: "running" }, b: { version: "1" } }).read);
    const other = { ...view("c"), name: 'quote " and \u2028 and é' };
    for (const page of [
      { items: [...kept, other], nextCursor: "c" },
      { items: [other, kept[1]!], nextCursor: null },
      { items: [], nextCursor: null },
    ]) {
      expect(views.pageJson(page)).toBe(JSON.stringify(page));
      expect(JSON.parse(views.pageJson(page))).toEqual(page);
    }
  });
});
