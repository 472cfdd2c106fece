// The views of vms this process has read, each kept with the version of the row it was read
// from: PostgreSQL's xmin, the transaction that wrote that row version, which every UPDATE
// changes (Prisma's or raw SQL, from any process on any host). A vm list reads only ids and
// versions in its page's order and reads the full rows of the vms whose version it has not
// seen (bench/api, a page of 50: the portal turned 1,020 fields into strings and objects and
// PostgreSQL formatted them for every page, although the rows seldom change between pages).
import type { VmView } from "./routers/vm.ts";

/** A page's vm as the list's first query reads it. */
export interface VmVersion {
  id: string;
  /** xmin as text */
  version: string;
}

/** A vm's view as read, with the row version it was read at. */
export interface VmRead {
  version: string;
  view: VmView;
}

interface Kept extends VmRead {
  /** when it was read (the process's clock) */
  readAt: number;
}

/** Reads the views of these vms, with their row versions, in any order; the views it makes become the kept ones. */
type ReadRows = (ids: string[]) => Promise<VmRead[]>;

/** How many views a process keeps (about 1.5 kB each with their JSON text); the oldest kept go first. */
export const vmViewsCapacity = 20_000;

/**
 * How long a view is used after it was read. xmin is a 32-bit transaction id that PostgreSQL
 * reuses after about four billion transactions, so a row could in principle come back with a
 * version seen before; no cluster gets through that many in ten minutes. Each view expires on
 * its own, so the vms of a fleet listed together are not all read again at the same moment.
 */
export const vmViewsLifetimeMs = 10 * 60_000;

export class VmViews {
  #byVmId = new Map<string, Kept>();
  /**
   * The JSON text of each view handed out, made once per row version: JSON.stringify of a
   * page's 50 views was the largest single cost left in a list request (bench/api). Weak, so a
   * text goes with its view.
   */
  #texts = new WeakMap<VmView, string>();
  /** Reads under way, by vm id: a page wanting a vm already being read waits for that read. */
  #reading = new Map<string, Promise<Map<string, VmRead>>>();

  constructor(
    private readonly capacity = vmViewsCapacity,
    private readonly lifetimeMs = vmViewsLifetimeMs,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The views of `page`'s vms in its order: kept ones whose version matches, the others read
   * with `readRows`. A vm another page is
   * reading already is taken from that read when it gives the version this page saw (clients
   * polling together after a restart read each vm once, not once each). A vm whose row is gone
   * by then is left out; one changed since the page was read is shown as it is now.
   */
  async of(page: readonly VmVersion[], readRows: ReadRows): Promise<VmView[]> {
    const views = page.map((vm) => this.#kept(vm));
    if (!views.includes(undefined)) return views as VmView[];
    const own = new Set<string>();
    const shared = new Set<Promise<Map<string, VmRead>>>();
    page.forEach(({ id }, i) => {
      if (views[i] !== undefined) return;
      const reading = this.#reading.get(id);
      if (reading) shared.add(reading);
      else own.add(id);
    });
    const [ownRead, ...sharedReads] = await Promise.all([this.#read([...own], readRows), ...[...shared].map((reading) => reading.catch(() => new Map<string, VmRead>()))]);
    const fromShared = new Map(sharedReads.flatMap((read) => [...read]));
    const found = (vm: VmVersion): VmView | undefined => {
      if (own.has(vm.id)) return ownRead.get(vm.id)?.view;
      const read = fromShared.get(vm.id);
      return read?.version === vm.version ? read.view : undefined;
    };
    // What another page's read did not give as this page saw it (it failed, or read an older version): read now.
    const again = await this.#read(
      page.filter((vm, i) => views[i] === undefined && !own.has(vm.id) && found(vm) === undefined).map(({ id }) => id),
      readRows,
    );
    return page.flatMap((vm, i) => views[i] ?? found(vm) ?? again.get(vm.id)?.view ?? []);
  }

  /** The kept view of `vm` if it is of that version and not expired. */
  #kept({ id, version }: VmVersion): VmView | undefined {
    const kept = this.#byVmId.get(id);
    return kept !== undefined && kept.version === version && this.now() - kept.readAt < this.lifetimeMs ? kept.view : undefined;
  }

  /** Read `ids` with `readRows` and keep their views; other pages may wait on the read meanwhile. */
  #read(ids: string[], readRows: ReadRows): Promise<Map<string, VmRead>> {
    if (ids.length === 0) return Promise.resolve(new Map());
    const reading = readRows(ids).then((rows) => {
      const readAt = this.now();
      const read = new Map<string, VmRead>();
      for (const { version, view } of rows) {
        // Shared by every request that lists the vm from now on, so nobody may change it.
        Object.freeze(view);
        if (view.progress !== null) Object.freeze(view.progress);
        this.#texts.set(view, JSON.stringify(view));
        read.set(view.id, { version, view });
        this.#keep(view.id, { version, view, readAt });
      }
      return read;
    });
    for (const id of ids) this.#reading.set(id, reading);
    const done = () => {
      for (const id of ids) if (this.#reading.get(id) === reading) this.#reading.delete(id);
    };
    reading.then(done, done);
    return reading;
  }

  /**
   * `JSON.stringify(page)` of a list page, with the text of each view handed out by this
   * instance made once. (A method, not a module's function: Next's bundle and the portal's
   * server each load this module, and share the instance in PortalServices.)
   */
  pageJson(page: { items: readonly VmView[]; nextCursor: string | null }): string {
    const items = page.items.map((view) => this.#texts.get(view) ?? JSON.stringify(view));
    return `{"items":[${items.join(",")}],"nextCursor":${JSON.stringify(page.nextCursor)}}`;
  }

  #keep(id: string, kept: Kept): void {
    this.#byVmId.delete(id);
    this.#byVmId.set(id, kept);
    if (this.#byVmId.size <= this.capacity) return;
    for (const oldest of this.#byVmId.keys()) {
      this.#byVmId.delete(oldest);
      if (this.#byVmId.size <= this.capacity) return;
    }
  }
}
