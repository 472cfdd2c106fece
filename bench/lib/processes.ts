// What the raw-QEMU baselines need to know about processes they did not spawn themselves.
import { hasExited } from "@ferry/engine/testing";

export { childrenOf } from "@ferry/engine/testing";

/** Resolves when `pid` has exited (gone or a zombie); /proc has no event for another's child. */
export async function gone(pid: number): Promise<void> {
  while (!hasExited(pid)) await new Promise((resolve) => setTimeout(resolve, 1));
}
