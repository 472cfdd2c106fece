// What the raw-QEMU baselines need to know about processes they did not spawn themselves.
import { readFileSync } from "node:fs";

/** The processes QEMU (main thread) has forked: the `exec:` migration's shell or zstd. */
export function childrenOf(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
}

/** Resolves when `pid` has exited (gone or a zombie); /proc has no event for another's child. */
export async function gone(pid: number): Promise<void> {
  for (;;) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) return;
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}
