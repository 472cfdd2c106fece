import type { Worker } from "../api.ts";
import type { Command } from "../command.ts";
import { formatMemory, table } from "../output.ts";

export const workerListCommand: Command = {
  words: ["worker", "list"],
  args: [],
  summary: "List the workers and their free capacity",
  options: {},
  waits: false,
  async run({ api, json, print }) {
    const list = await api().request<{ items: Worker[] }>("GET", "/workers");
    if (json) return print(JSON.stringify(list));
    if (list.items.length === 0) return print("no workers have registered yet");
    print(
      table([
        ["ID", "STATUS", "ACCEL", "VCPUS FREE", "MEMORY FREE", "HOST", "LAST HEARTBEAT"],
        ...list.items.map((w) => [
          w.id,
          w.status,
          w.accelerator,
          `${w.vcpusFree}/${w.vcpusTotal}`,
          `${formatMemory(w.memoryMiBFree)}/${formatMemory(w.memoryMiBTotal)}`,
          w.hostname,
          w.lastHeartbeatAt,
        ]),
      ]),
    );
  },
};
