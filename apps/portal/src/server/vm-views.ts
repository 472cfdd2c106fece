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

interface Kept {
  version: string;
  view: VmView;
}

/** How many views a process keeps (about 1.5 kB each with their JSON text); the oldest kept go first. */
export const vmViewsCapacity = 20_000;

/**
 * How long any view is kept. xmin is a 32-bit transaction id that PostgreSQL reuses after about
 * four billion transactions, so a row could in principle come back with a version seen before;
 * no cluster gets through that many in ten minutes.
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
  /** when every view kept was read or later */
  #since: number;

  constructor(
    private readonly capacity = vmViewsCapacity,
    private readonly lifetimeMs = vmViewsLifetimeMs,
    private readonly now: () => number = Date.now,
  ) {
    this.#since = now();
  }

  /**
   * The views of `page`'s vms in its order: kept ones whose version matches, the others read
   * with `readRows` (ids in, rows with their versions out, in any order). A vm whose row is
   * gone by then is left out; one changed since the page was read is shown as it is now.
   */
  async of(page: readonly VmVersion[], readRows: (ids: string[]) => Promise<(VmView & { version: string })[]>): Promise<VmView[]> {
    const now = this.now();
    if (now - this.#since >= this.lifetimeMs) {
      this.#byVmId.clear();
      this.#since = now;
    }
    const views: (VmView | undefined)[] = page.map(({ id, version }) => {
      const kept = this.#byVmId.get(id);
      return kept?.version === version ? kept.view : undefined;
    });
    const missing = page.filter((_, i) => views[i] === undefined).map(({ id }) => id);
    if (missing.length === 0) return views as VmView[];
    const read = new Map<string, VmView>();
    for (const { version, ...row } of await readRows(missing)) {
      // Shared by every request that lists the vm from now on, so nobody may change it.
      const view = Object.freeze({ ...row, progress: row.progress === null ? null : Object.freeze(row.progress) });
      this.#texts.set(view, JSON.stringify(view));
      read.set(view.id, view);
      this.#keep(view.id, version, view);
    }
    return page.flatMap(({ id }, i) => views[i] ?? read.get(id) ?? []);
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

  #keep(id: string, version: string, view: VmView): void {
    this.#byVmId.delete(id);
    this.#byVmId.set(id, { version, view });
    if (this.#byVmId.size <= this.capacity) return;
    for (const oldest of this.#byVmId.keys()) {
      this.#byVmId.delete(oldest);
      if (this.#byVmId.size <= this.capacity) return;
    }
  }
}
