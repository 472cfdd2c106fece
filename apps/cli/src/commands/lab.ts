// Hosted labs on the command line: templates (a vm published as a golden point) and classes
// (a roster of students, each with a clone of the template, within a schedule and limits).
import { readFileSync } from "node:fs";
import type { LabClass, LabSeat, LabTemplate, Page } from "../api.ts";
import type { Command, CommandContext } from "../command.ts";
import { CommandError, UsageError } from "../errors.ts";
import { fields, formatBytes, formatMemory, table } from "../output.ts";
import { pollUntil } from "../wait.ts";
import { integerOption } from "./vm.ts";

const pollIntervalMs = 1000;

function stringOption(values: CommandContext["values"], name: string): string {
  const value = values[name];
  if (typeof value !== "string" || value === "") throw new UsageError(`missing --${name}`);
  return value;
}

/** An instant given on the command line, as the API takes it (ISO 8601). */
function instantOption(values: CommandContext["values"], name: string): string {
  const raw = stringOption(values, name);
  const at = new Date(raw);
  if (Number.isNaN(at.getTime())) throw new UsageError(`--${name} ${raw} is not a date and time; write it like 2030-01-31T09:00:00Z`);
  return at.toISOString();
}

/** A comma-separated list option, e.g. --emails a@x,b@y. */
function listOption(values: CommandContext["values"], name: string): string[] | undefined {
  const raw = values[name];
  if (typeof raw !== "string") return undefined;
  const items = raw.split(",").map((item) => item.trim()).filter((item) => item !== "");
  if (items.length === 0) throw new UsageError(`--${name} names nobody; give a comma-separated list`);
  return items;
}

/** Seats named by email or id, as the class's seat ids. */
function seatIds(labClass: LabClass & { seats: LabSeat[] }, named: string[]): string[] {
  return named.map((name) => {
    const seat = labClass.seats.find((s) => s.id === name || s.email.toLowerCase() === name.toLowerCase());
    if (seat === undefined) throw new CommandError(`class ${labClass.name} has no student ${name}; 'ferry class show ${labClass.name}' lists its seats`, "not_found", 404);
    return seat.id;
  });
}

function duration(seconds: number): string {
  const minutes = Math.floor(Math.max(seconds, 0) / 60);
  return minutes >= 60 ? `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m` : `${minutes}m`;
}

function classSummary(labClass: LabClass): string {
  return `class ${labClass.name} (${labClass.id}) is ${labClass.status}, ${labClass.seatCount} student${labClass.seatCount === 1 ? "" : "s"}`;
}

function printClass({ json, print }: CommandContext, labClass: LabClass & { seats: LabSeat[] }, sentence = classSummary(labClass)): void {
  print(json ? JSON.stringify(labClass) : sentence);
}

function templateRows(templates: LabTemplate[]): string[][] {
  return [
    ["NAME", "VERSION", "STATUS", "IMAGE", "MEMORY", "STORED", "ID"],
    ...templates.map((t) => {
      const newest = t.versions[0];
      return [
        t.name,
        newest ? String(newest.version) : "-",
        newest?.status ?? "-",
        newest?.image ?? "-",
        newest ? formatMemory(newest.memoryMiB) : "-",
        newest?.storedBytes != null ? formatBytes(newest.storedBytes) : "-",
        t.id,
      ];
    }),
  ];
}

/** Poll the template until its version `versionId` is no longer publishing. */
function waitUntilPublished(context: CommandContext, template: LabTemplate, versionId: string): Promise<LabTemplate> {
  const api = context.api();
  const versionOf = (current: LabTemplate) => {
    const version = current.versions.find((v) => v.id === versionId);
    if (version === undefined) throw new CommandError(`template ${current.name} lost its version ${versionId} while we waited`, "not_found");
    return version;
  };
  return pollUntil(template, {
    next: (current) => api.findTemplate(current.id),
    show: (current) => {
      const version = versionOf(current);
      return [`template ${current.name} version ${version.version}: ${version.status}`];
    },
    done: (current) => {
      const version = versionOf(current);
      if (version.status === "failed") {
        throw new CommandError(`publishing template ${current.name} version ${version.version} failed${version.statusReason ? `: ${version.statusReason}` : ""}`, "publish_failed");
      }
      return version.status === "ready";
    },
    late: (current) => {
      const version = versionOf(current);
      return new CommandError(`template ${current.name} version ${version.version} is still ${version.status} after ${context.timeoutMs / 1000} s; 'ferry template list' follows it`, "timeout");
    },
    timeoutMs: context.timeoutMs,
    intervalMs: pollIntervalMs,
  });
}

export const templateCommands: Command[] = [
  {
    words: ["template", "list"],
    args: [],
    summary: "List the lab templates you can see, with their newest version",
    options: { project: { type: "string", placeholder: "<id>", description: "only this project's templates" } },
    waits: false,
    async run({ api, json, print, values }) {
      const items = await api().all<LabTemplate>(typeof values.project === "string" ? `/templates?projectId=${encodeURIComponent(values.project)}` : "/templates");
      const list: Page<LabTemplate> = { items, nextCursor: null };
      if (json) return print(JSON.stringify(list));
      if (items.length === 0) return print("no lab templates yet; publish a vm with 'ferry template publish <vm> --name <name>'");
      print(table(templateRows(items)));
    },
  },
  {
    words: ["template", "publish"],
    args: ["<vm id|name>"],
    summary: "Publish a running or suspended vm as the next version of a lab template (the vm is suspended)",
    options: { name: { type: "string", placeholder: "<name>", description: "the template's name; an existing template of that name gets a new version" } },
    waits: true,
    async run(context) {
      const name = stringOption(context.values, "name");
      const api = context.api();
      const vm = await api.findVm(context.positionals[0]!);
      const published = await api.request<LabTemplate>("POST", "/templates", { vmId: vm.id, name });
      const version = published.versions[0]!;
      const template = context.wait ? await waitUntilPublished(context, published, version.id) : published;
      const shown = template.versions.find((v) => v.id === version.id)!;
      context.print(context.json ? JSON.stringify(template) : `template ${template.name} (${template.id}) version ${shown.version} is ${shown.status}`);
    },
  },
];

export const classCommands: Command[] = [
  {
    words: ["class", "create"],
    args: [],
    summary: "Create a lab class from a template, with a roster, a schedule and time limits",
    options: {
      template: { type: "string", placeholder: "<id|name>", description: "the lab template" },
      version: { type: "string", placeholder: "<n>", description: "the template version (default: the newest ready one)" },
      name: { type: "string", placeholder: "<name>", description: "1-63 characters" },
      opens: { type: "string", placeholder: "<time>", description: "when students may start, e.g. 2030-01-31T09:00:00Z" },
      closes: { type: "string", placeholder: "<time>", description: "when the class closes" },
      session: { type: "string", placeholder: "<minutes>", description: "minutes a student's vm runs per session" },
      total: { type: "string", placeholder: "<minutes>", description: "minutes each student may use in all" },
      emails: { type: "string", placeholder: "<a@x,b@y>", description: "the roster, comma-separated" },
      instructions: { type: "string", placeholder: "<file>", description: "a Markdown file shown beside each student's console" },
      "join-code-until": { type: "string", placeholder: "<time>", description: "give the class a join code valid until then" },
      "when-full": { type: "string", placeholder: "refuse|queue", description: "a roster the cluster cannot host at start: refuse (default) or queue" },
    },
    waits: false,
    async run(context) {
      const { values } = context;
      const templateName = stringOption(values, "template");
      let instructions: string | undefined;
      if (typeof values.instructions === "string") {
        try {
          instructions = readFileSync(values.instructions, "utf8");
        } catch (error) {
          throw new UsageError(`cannot read --instructions ${values.instructions}: ${(error as Error).message}`);
        }
      }
      const emails = listOption(values, "emails");
      const body = {
        name: stringOption(values, "name"),
        opensAt: instantOption(values, "opens"),
        closesAt: instantOption(values, "closes"),
        sessionMinutes: integerOption(values, "session"),
        totalMinutes: integerOption(values, "total"),
        ...(values.version === undefined ? {} : { version: integerOption(values, "version") }),
        ...(instructions === undefined ? {} : { instructions }),
        ...(emails === undefined ? {} : { emails }),
        ...(values["join-code-until"] === undefined ? {} : { joinCode: { expiresAt: instantOption(values, "join-code-until") } }),
        ...(typeof values["when-full"] === "string" ? { whenFull: values["when-full"] } : {}),
      };
      const api = context.api();
      const template = await api.findTemplate(templateName);
      const created = await api.request<LabClass & { seats: LabSeat[] }>("POST", "/classes", { templateId: template.id, ...body });
      printClass(context, created, `${classSummary(created)}${created.joinCode ? `; join code ${created.joinCode}` : ""}`);
    },
  },
  {
    words: ["class", "list"],
    args: [],
    summary: "List the lab classes you can see, newest first",
    options: { project: { type: "string", placeholder: "<id>", description: "only this project's classes" } },
    waits: false,
    async run({ api, json, print, values }) {
      const items = await api().all<LabClass>(typeof values.project === "string" ? `/classes?projectId=${encodeURIComponent(values.project)}` : "/classes");
      const list: Page<LabClass> = { items, nextCursor: null };
      if (json) return print(JSON.stringify(list));
      if (items.length === 0) return print("no classes yet; create one with 'ferry class create'");
      print(
        table([
          ["NAME", "STATUS", "STUDENTS", "TEMPLATE", "OPENS", "CLOSES", "ID"],
          ...items.map((c) => [c.name, c.status, String(c.seatCount), `${c.templateName} v${c.templateVersion}`, c.opensAt, c.closesAt, c.id]),
        ]),
      );
    },
  },
  {
    words: ["class", "show"],
    args: ["<id|name>"],
    summary: "Show a class and each student's vm and time left",
    options: {},
    waits: false,
    async run(context) {
      const labClass = await context.api().findClass(context.positionals[0]!);
      const about = fields([
        ["name", labClass.name],
        ["id", labClass.id],
        ["status", labClass.status],
        ["template", `${labClass.templateName} v${labClass.templateVersion}`],
        ["opens", labClass.opensAt],
        ["closes", labClass.closesAt],
        ["session", `${labClass.sessionMinutes}m`],
        ["total", `${labClass.totalMinutes}m`],
        ["join code", labClass.joinCode ? `${labClass.joinCode} (until ${labClass.joinCodeExpiresAt})` : "-"],
        ["when full", labClass.whenFull],
      ]);
      const seats =
        labClass.seats.length === 0
          ? "no students yet; add some with 'ferry class roster add'"
          : table([
              ["STUDENT", "VM", "STATE", "WORKER", "LEFT", "SESSION LEFT", "CONTROLLED BY", "SEAT"],
              ...labClass.seats.map((s) => [
                s.email,
                s.vmId ?? "-",
                s.vmState ?? "-",
                s.workerId ?? "-",
                duration(s.secondsLeft),
                duration(s.sessionSecondsLeft),
                s.controlledBy?.name ?? "-",
                s.id,
              ]),
            ]);
      printClass(context, labClass, `${about}\n\n${seats}`);
    },
  },
  {
    words: ["class", "start"],
    args: ["<id|name>"],
    summary: "Start a class: every student's clone is made now, unless --no-prewarm",
    options: { prewarm: { type: "boolean", description: "make the students' clones now (default; --no-prewarm makes each on the student's first visit)" } },
    waits: false,
    async run(context) {
      const api = context.api();
      const labClass = await api.findClass(context.positionals[0]!);
      printClass(context, await api.request("POST", `/classes/${labClass.id}/start`, { prewarm: context.values.prewarm !== false }));
    },
  },
  {
    words: ["class", "end"],
    args: ["<id|name>"],
    summary: "End a class: every running student vm is suspended to object storage",
    options: {},
    waits: false,
    async run(context) {
      const api = context.api();
      const labClass = await api.findClass(context.positionals[0]!);
      printClass(context, await api.request("POST", `/classes/${labClass.id}/end`));
    },
  },
  {
    words: ["class", "extend"],
    args: ["<id|name>"],
    summary: "Give students (all, or those named) more minutes in total",
    options: {
      minutes: { type: "string", placeholder: "<n>", description: "minutes to add" },
      students: { type: "string", placeholder: "<email|seat,…>", description: "only these students (default: all)" },
    },
    waits: false,
    async run(context) {
      const minutes = integerOption(context.values, "minutes");
      const named = listOption(context.values, "students");
      const api = context.api();
      const labClass = await api.findClass(context.positionals[0]!);
      const extended = await api.request<LabClass & { seats: LabSeat[] }>("POST", `/classes/${labClass.id}/extend`, { minutes, ...(named ? { seatIds: seatIds(labClass, named) } : {}) });
      printClass(context, extended, `class ${extended.name}: ${named ? named.length : "every"} student${named?.length === 1 ? "" : "s"} got ${minutes} more minutes`);
    },
  },
  {
    words: ["class", "reset"],
    args: ["<id|name>"],
    summary: "Take students' vms (all, or those named) back to the golden point; their changes are lost",
    options: { students: { type: "string", placeholder: "<email|seat,…>", description: "only these students (default: all)" } },
    waits: false,
    async run(context) {
      const named = listOption(context.values, "students");
      const api = context.api();
      const labClass = await api.findClass(context.positionals[0]!);
      type Reset = LabClass & { seats: LabSeat[]; notReset: { seatId: string; email: string; reason: string }[] };
      const reset = await api.request<Reset>("POST", `/classes/${labClass.id}/reset`, named ? { seatIds: seatIds(labClass, named) } : {});
      const skipped = reset.notReset.map((s) => `\n  ${s.email}: ${s.reason}`).join("");
      printClass(context, reset, `class ${reset.name}: ${named ? named.join(", ") : "every student"} going back to the golden point${skipped ? `; not reset:${skipped}` : ""}`);
    },
  },
  {
    words: ["class", "roster", "add"],
    args: ["<id|name>"],
    summary: "Add students to a class by email",
    options: { emails: { type: "string", placeholder: "<a@x,b@y>", description: "the students, comma-separated" } },
    waits: false,
    async run(context) {
      const emails = listOption(context.values, "emails");
      if (emails === undefined) throw new UsageError("missing --emails");
      const api = context.api();
      const labClass = await api.findClass(context.positionals[0]!);
      printClass(context, await api.request("POST", `/classes/${labClass.id}/roster`, { emails }));
    },
  },
  {
    words: ["class", "link"],
    args: ["<id|name>", "<student email|seat>"],
    summary: "Print a link that opens a student's console once, within 5 minutes, without signing in",
    options: {},
    waits: false,
    async run(context) {
      const api = context.api();
      const labClass = await api.findClass(context.positionals[0]!);
      const [seatId] = seatIds(labClass, [context.positionals[1]!]);
      const link = await api.request<{ url: string; expiresAt: string }>("POST", `/classes/${labClass.id}/seats/${seatId}/link`);
      context.print(context.json ? JSON.stringify(link) : link.url);
    },
  },
];
