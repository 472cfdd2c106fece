import type { Page, Vm } from "../api.ts";
import type { Command, CommandContext } from "../command.ts";
import { CommandError, UsageError } from "../errors.ts";
import { fields, formatMemory, table } from "../output.ts";
import { waitUntilSettled } from "../wait.ts";

/** Print a vm as the API returned it (--json) or as a sentence. */
function printVm({ json, print }: CommandContext, vm: Vm, sentence: string): void {
  print(json ? JSON.stringify(vm) : sentence);
}

function settledSentence(vm: Vm): string {
  if (vm.state === "deleted") return `vm ${vm.name} (${vm.id}) is deleted`;
  return `vm ${vm.name} (${vm.id}) is ${vm.state}${vm.workerId ? ` on ${vm.workerId}` : ""}`;
}

async function followUp(context: CommandContext, vm: Vm, wanted: string, action: string): Promise<void> {
  if (!context.wait) {
    return printVm(context, vm, `vm ${vm.name} (${vm.id}): ${action} requested; it is ${vm.state} and wants ${vm.desiredState} ('ferry vm show ${vm.name}' follows it)`);
  }
  const settled = await waitUntilSettled(context.api(), vm, wanted, action, context.timeoutMs);
  printVm(context, settled, settledSentence(settled));
}

/** A whole-number option, optionally with a unit suffix (`--memory 2G`); a usage error otherwise. */
export function integerOption(values: CommandContext["values"], name: string, unitSuffixes: Record<string, number> = {}): number {
  const raw = values[name];
  if (typeof raw !== "string") throw new UsageError(`missing --${name}`);
  const match = /^(\d+)([A-Za-z]*)$/.exec(raw.trim());
  const multiplier = match ? (match[2] === "" ? 1 : unitSuffixes[match[2]!.toLowerCase()]) : undefined;
  if (!match || multiplier === undefined) {
    const units = Object.keys(unitSuffixes);
    throw new UsageError(`--${name} ${raw} is not a whole number${units.length > 0 ? ` (optionally with ${units.join(", ")})` : ""}`);
  }
  return Number(match[1]) * multiplier;
}

/** An action without a body: POST /vms/{id}/<verb> (or DELETE /vms/{id}), then wait for `wanted`. */
function actionCommand(verb: "start" | "stop" | "reboot" | "suspend" | "delete", wanted: string, summary: string): Command {
  return {
    words: ["vm", verb],
    args: ["<id|name>"],
    summary,
    options: {},
    waits: true,
    async run(context) {
      const api = context.api();
      const vm = await api.findVm(context.positionals[0]!);
      const updated = verb === "delete" ? await api.request<Vm>("DELETE", `/vms/${vm.id}`) : await api.request<Vm>("POST", `/vms/${vm.id}/${verb}`);
      await followUp(context, updated, wanted, verb);
    },
  };
}

/** resume and migrate may name the worker to go to. */
function toWorkerCommand(verb: "resume" | "migrate", summary: string): Command {
  return {
    words: ["vm", verb],
    args: ["<id|name>"],
    summary,
    options: { worker: { type: "string", placeholder: "<worker id>", description: "the worker to run it on (default: the controller picks)" } },
    waits: true,
    async run(context) {
      const api = context.api();
      const vm = await api.findVm(context.positionals[0]!);
      const workerId = context.values.worker as string | undefined;
      const updated = await api.request<Vm>("POST", `/vms/${vm.id}/${verb}`, workerId === undefined ? undefined : { workerId });
      if (verb === "resume" || !context.wait) return followUp(context, updated, "running", verb);
      // A live migration that fails leaves the guest running where it was, with the reason.
      const settled = await waitUntilSettled(api, updated, "running", verb, context.timeoutMs);
      if (settled.workerId === vm.workerId) {
        throw new CommandError(`vm ${vm.name} is still running on worker ${vm.workerId}: ${settled.stateReason ?? "the migration did not complete"}`, "migration_failed");
      }
      printVm(context, settled, settledSentence(settled));
    },
  };
}

export const vmCommands: Command[] = [
  {
    words: ["vm", "create"],
    args: [],
    summary: "Create a vm and start it",
    options: {
      name: { type: "string", placeholder: "<name>", description: "1-63 characters" },
      image: { type: "string", placeholder: "<image>", description: "a guest image, e.g. tiny" },
      vcpus: { type: "string", placeholder: "<n>", description: "virtual CPUs (1-16)" },
      memory: { type: "string", placeholder: "<MiB>", description: "memory in MiB, or with a unit: 512M, 2G" },
      profile: { type: "string", placeholder: "<profile>", description: "hardware profile (default: standard)" },
      project: { type: "string", placeholder: "<id>", description: "the project to create it in (default: the token's project; 'ferry project list' shows them)" },
    },
    waits: true,
    async run(context) {
      const { values } = context;
      for (const name of ["name", "image"]) if (typeof values[name] !== "string") throw new UsageError(`missing --${name}`);
      const body = {
        name: values.name as string,
        image: values.image as string,
        vcpus: integerOption(values, "vcpus"),
        memoryMiB: integerOption(values, "memory", { m: 1, mib: 1, g: 1024, gib: 1024 }),
        ...(typeof values.profile === "string" ? { profile: values.profile } : {}),
        ...(typeof values.project === "string" ? { projectId: values.project } : {}),
      };
      const vm = await context.api().request<Vm>("POST", "/vms", body);
      await followUp(context, vm, "running", "create");
    },
  },
  {
    words: ["vm", "list"],
    args: [],
    summary: "List your vms, newest first",
    options: {},
    waits: false,
    async run({ api, json, print }) {
      const items = await api().allVms();
      // The API's list object, with every page in it.
      const list: Page<Vm> = { items, nextCursor: null };
      if (json) return print(JSON.stringify(list));
      if (items.length === 0) return print("no vms yet; create one with 'ferry vm create'");
      print(
        table([
          ["NAME", "STATE", "VCPUS", "MEMORY", "WORKER", "ID"],
          ...items.map((vm) => [vm.name, vm.state === vm.desiredState ? vm.state : `${vm.state} → ${vm.desiredState}`, String(vm.vcpus), formatMemory(vm.memoryMiB), vm.workerId ?? "-", vm.id]),
        ]),
      );
    },
  },
  {
    words: ["vm", "show"],
    args: ["<id|name>"],
    summary: "Show one vm",
    options: {},
    waits: false,
    async run(context) {
      const vm = await context.api().findVm(context.positionals[0]!);
      printVm(
        context,
        vm,
        fields([
          ["name", vm.name],
          ["id", vm.id],
          ["state", vm.state],
          ["wanted", vm.desiredState],
          ...(vm.stateReason ? [["reason", vm.stateReason] as [string, string]] : []),
          ...(vm.operation ? [["operation", vm.operation] as [string, string]] : []),
          ["project", vm.projectId],
          ["worker", vm.workerId ?? "-"],
          ["accelerator", vm.accelerator ?? "-"],
          ["image", vm.image],
          ["vcpus", String(vm.vcpus)],
          ["memory", formatMemory(vm.memoryMiB)],
          ["profile", vm.profile],
          ["cpu model", vm.cpuModel],
          ["created", vm.createdAt],
          ["state since", vm.stateChangedAt],
        ]),
      );
    },
  },
  actionCommand("start", "running", "Start a stopped vm"),
  actionCommand("stop", "stopped", "Stop a vm (its disk is kept)"),
  actionCommand("reboot", "running", "Reboot a running vm"),
  actionCommand("suspend", "suspended", "Save a running vm's guest state and stop it"),
  toWorkerCommand("resume", "Resume a suspended vm"),
  toWorkerCommand("migrate", "Move a running vm to another worker while it runs"),
  actionCommand("delete", "deleted", "Delete a vm and its disk"),
  {
    words: ["vm", "console-log"],
    args: ["<id|name>"],
    summary: "Print the vm's serial console output",
    options: {
      follow: { type: "boolean", description: "keep printing new output until the vm is deleted (Ctrl-C stops)" },
      tail: { type: "string", placeholder: "<lines>", description: "only the last <lines> lines" },
    },
    waits: false,
    async run(context) {
      const api = context.api();
      const vm = await api.findVm(context.positionals[0]!);
      const tail = context.values.tail === undefined ? "" : `?tail=${integerOption(context.values, "tail")}`;
      type ConsoleLog = { vmId: string; text: string };
      const first = await api.request<ConsoleLog>("GET", `/vms/${vm.id}/console-log${tail}`);
      const emit = (log: ConsoleLog) => {
        if (context.json) context.print(JSON.stringify(log));
        else if (log.text !== "") process.stdout.write(log.text);
      };
      emit(first);
      if (!context.values.follow) {
        if (!context.json && first.text !== "" && !first.text.endsWith("\n")) process.stdout.write("\n");
        return;
      }
      let shown = first.text;
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        let log: ConsoleLog;
        try {
          log = await api.request<ConsoleLog>("GET", `/vms/${vm.id}/console-log`);
        } catch (error) {
          if (error instanceof CommandError && error.status === 404) return;
          throw error;
        }
        const fresh = newText(shown, log.text);
        shown = log.text;
        if (fresh !== "") emit({ vmId: log.vmId, text: fresh });
      }
    },
  },
];

/**
 * What `next` adds to `previous`. The portal keeps a bounded log, so old output may have been
 * dropped from the front: then the new part starts after the end of what was shown.
 */
function newText(previous: string, next: string): string {
  if (next.startsWith(previous)) return next.slice(previous.length);
  const anchor = previous.slice(-256);
  const at = anchor === "" ? -1 : next.lastIndexOf(anchor);
  return at >= 0 ? next.slice(at + anchor.length) : next;
}
