import type { Organization, Page, Project } from "../api.ts";
import type { Command } from "../command.ts";
import { formatBytes, formatMemory, table } from "../output.ts";

export const projectListCommand: Command = {
  words: ["project", "list"],
  args: [],
  summary: "List the projects you can see, with your role, quota and usage",
  options: {},
  waits: false,
  async run({ api, json, print }) {
    const client = api();
    const items = await client.all<Project>("/projects");
    // The API's list object, with every page in it.
    const list: Page<Project> = { items, nextCursor: null };
    if (json) return print(JSON.stringify(list));
    if (items.length === 0) return print("you are in no project yet; ask an organization owner or admin to add you");
    const organizations = await client.all<Organization>("/organizations");
    const organizationName = (id: string) => organizations.find((o) => o.id === id)?.name ?? id;
    const used = (usage: number, quota: number, show: (n: number) => string = String) => `${show(usage)}/${show(quota)}`;
    print(
      table([
        ["ORGANIZATION", "PROJECT", "ROLE", "VMS", "VCPUS", "MEMORY", "GUEST STATES", "ID"],
        ...items.map((p) => [
          organizationName(p.organizationId),
          p.name,
          p.role,
          used(p.usage.vms, p.quota.vms),
          used(p.usage.vcpus, p.quota.vcpus),
          used(p.usage.memoryMiB, p.quota.memoryMiB, formatMemory),
          used(p.usage.stateBytes, p.quota.stateBytes, formatBytes),
          p.id,
        ]),
      ]),
    );
  },
};
