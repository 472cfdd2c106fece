// The `ferry` command as a person runs it: a child process per command, against a whole Ferry
// (portal, controller, two workers on QEMU/TCG) started by the launcher in a temporary folder.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFerryCluster, type FerryCluster } from "../../../bench/lib/ferry-cluster.ts";

const ferryBin = fileURLToPath(new URL("../bin/ferry.mjs", import.meta.url));

let cluster: FerryCluster;
let home: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `ferry args...` with a HOME of its own and no FERRY_URL/FERRY_TOKEN unless given. */
function ferry(args: string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ferryBin, ...args], {
      cwd: home,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, ...extraEnv },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Start `ferry args...`, resolve with its output once `until(stdout)` holds, then interrupt it. */
function ferryUntil(args: string[], until: (stdout: string) => boolean, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ferryBin, ...args], { cwd: home, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => {
      child.kill("SIGINT");
      reject(new Error(`ferry ${args.join(" ")} did not print what was awaited within ${timeoutMs} ms; stdout:\n${stdout.slice(-2000)}\nstderr:\n${stderr}`));
    }, timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      if (until(stdout)) {
        clearTimeout(timer);
        child.kill("SIGINT");
        resolve(stdout);
      }
    });
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  });
}

const highestTick = (text: string) => Math.max(0, ...[...text.matchAll(/ferry-tick (\d+)/g)].map((m) => Number(m[1])));

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "ferry-cli-home-"));
  cluster = await startFerryCluster();
}, 600_000);

afterAll(async () => {
  await cluster?.stop();
  if (home) rmSync(home, { recursive: true, force: true });
}, 120_000);

describe("ferry", () => {
  it("answers usage errors with exit 2 and the command's help", async () => {
    const unknown = await ferry(["vm", "frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'vm frobnicate'");
    expect(unknown.stderr).toContain("ferry vm create");

    const missing = await ferry(["vm", "create", "--name", "x", "--image", "tiny", "--vcpus", "1"]);
    expect(missing).toMatchObject({ code: 2, stderr: expect.stringContaining("missing --memory") });
    const notNumber = await ferry(["vm", "create", "--name", "x", "--image", "tiny", "--vcpus", "two", "--memory", "256"]);
    expect(notNumber).toMatchObject({ code: 2, stderr: expect.stringContaining("--vcpus two is not a whole number") });
    const badOption = await ferry(["vm", "list", "--colour"]);
    expect(badOption).toMatchObject({ code: 2, stderr: expect.stringContaining("--colour") });
    const noArgument = await ferry(["vm", "show"]);
    expect(noArgument).toMatchObject({ code: 2, stderr: expect.stringContaining("expected <id|name>") });
    const notLoggedIn = await ferry(["vm", "list"]);
    expect(notLoggedIn).toMatchObject({ code: 2, stderr: expect.stringContaining("not logged in") });

    const help = await ferry(["vm", "resume", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("usage: ferry vm resume <id|name> [options]");
    expect(help.stdout).toContain("--worker <worker id>");
    expect(help.stdout).toContain("--no-wait");
  });

  it("logs in only with a token the portal accepts, and saves it readable by the user only", async () => {
    const refused = await ferry(["login", "--url", cluster.baseUrl, "--token", "not-a-token"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("The API token in the Authorization header is unknown, revoked or expired");

    const unreachable = await ferry(["login", "--url", "http://127.0.0.1:9", "--token", cluster.token]);
    expect(unreachable).toMatchObject({ code: 1, stderr: expect.stringContaining("cannot reach the portal at http://127.0.0.1:9") });

    const ok = await ferry(["login", "--url", `${cluster.baseUrl}/`, "--token", cluster.token]);
    expect(ok).toMatchObject({ code: 0, stdout: expect.stringContaining(`logged in to ${cluster.baseUrl}`) });
    const configFile = join(home, ".config", "ferry", "config.json");
    expect(JSON.parse(readFileSync(configFile, "utf8"))).toEqual({ url: cluster.baseUrl, token: cluster.token });
    expect(statSync(configFile).mode & 0o777).toBe(0o600);

    // The environment overrides the saved login.
    const overridden = await ferry(["worker", "list"], { FERRY_TOKEN: "not-a-token" });
    expect(overridden.code).toBe(1);
  });

  it("lists the workers", async () => {
    const workers = await ferry(["worker", "list", "--json"]);
    expect(workers.code).toBe(0);
    const ids = (JSON.parse(workers.stdout) as { items: { id: string; status: string }[] }).items.map((w) => w.id);
    expect(ids).toEqual(["w1", "w2"]);
  });

  const name = `cli-${process.pid}`;
  let vmId: string;

  it("creates a vm and waits until it runs, showing its progress on stderr", async () => {
    const created = await ferry(["vm", "create", "--name", name, "--image", "tiny", "--vcpus", "1", "--memory", "256", "--json"]);
    expect(created.stderr).toContain(`vm ${name}: running on w`);
    expect(created.code).toBe(0);
    const vm = JSON.parse(created.stdout) as { id: string; name: string; state: string; desiredState: string; operation: string | null; memoryMiB: number };
    expect(vm).toMatchObject({ name, state: "running", desiredState: "running", operation: null, memoryMiB: 256 });
    vmId = vm.id;

    const refused = await ferry(["vm", "create", "--name", `${name}-big`, "--image", "tiny", "--vcpus", "17", "--memory", "256"]);
    expect(refused).toMatchObject({ code: 1, stderr: expect.stringContaining("vcpus: must be between 1 and 16") });
  });

  it("lists and shows the vm by name", async () => {
    const list = await ferry(["vm", "list", "--json"]);
    expect(list.code).toBe(0);
    const listed = (JSON.parse(list.stdout) as { items: { id: string; name: string }[] }).items;
    expect(listed.find((vm) => vm.id === vmId)?.name).toBe(name);
    const table = await ferry(["vm", "list"]);
    expect(table.stdout).toMatch(new RegExp(`^${name}\\s+running\\s+1\\s+256 MiB\\s+w[12]\\s+${vmId}$`, "m"));

    const shown = await ferry(["vm", "show", name, "--json"]);
    expect(JSON.parse(shown.stdout)).toMatchObject({ id: vmId, name, state: "running" });
    const byId = await ferry(["vm", "show", vmId]);
    expect(byId.stdout).toMatch(new RegExp(`^name:\\s+${name}$`, "m"));
    const missing = await ferry(["vm", "show", "no-such-vm"]);
    expect(missing).toMatchObject({ code: 1, stderr: expect.stringContaining('no vm named "no-such-vm"') });
  });

  it("prints the console log", async () => {
    const log = await ferry(["vm", "console-log", name]);
    expect(log.code).toBe(0);
    expect(log.stdout).toContain("FERRY-BOOT-OK");
    const json = await ferry(["vm", "console-log", vmId, "--json", "--tail", "1"]);
    const { vmId: logVmId, text } = JSON.parse(json.stdout) as { vmId: string; text: string };
    expect(logVmId).toBe(vmId);
    expect(text.trimEnd().split("\n")).toHaveLength(1);
  });

  it("follows the console log as the guest writes it", async () => {
    const now = highestTick((await ferry(["vm", "console-log", name])).stdout);
    // Three tick lines, not "three ticks past now": on a loaded host the guest may tick before
    // the first poll, which then prints a later last line.
    const tickLines = (stdout: string) => [...stdout.matchAll(/ferry-tick (\d+)/g)].map((m) => Number(m[1]));
    const followed = await ferryUntil(["vm", "console-log", name, "--follow", "--tail", "1"], (stdout) => tickLines(stdout).length >= 3, 60_000);
    // The first poll printed the last line; the later ones only what the guest wrote since.
    const ticks = tickLines(followed);
    expect(ticks[0]).toBeGreaterThanOrEqual(now);
    expect(ticks).toEqual([...new Set(ticks)].sort((a, b) => a - b));
  });

  it("suspends and resumes the vm, waiting for each", async () => {
    const suspended = await ferry(["vm", "suspend", name, "--json"]);
    // The transitional states may pass between two polls; the settled one is always shown.
    expect(suspended.stderr).toMatch(new RegExp(`^vm ${name}: suspended$`, "m"));
    expect(suspended.code).toBe(0);
    expect(JSON.parse(suspended.stdout)).toMatchObject({ id: vmId, state: "suspended", operation: null });
    const resumed = await ferry(["vm", "resume", name]);
    expect(resumed.stderr).toMatch(new RegExp(`^vm ${name}: running on w[12]`, "m"));
    expect(resumed).toMatchObject({ code: 0, stdout: expect.stringMatching(new RegExp(`^vm ${name} \\(${vmId}\\) is running on w[12]\n$`)) });
  });

  it("live-migrates the vm to the other worker, or to a named one", async () => {
    const before = JSON.parse((await ferry(["vm", "show", name, "--json"])).stdout) as { workerId: string };
    const moved = await ferry(["vm", "migrate", name, "--json"]);
    expect(moved.stderr).toMatch(new RegExp(`^vm ${name}: running on w[12]$`, "m"));
    expect(moved.code).toBe(0);
    const after = JSON.parse(moved.stdout) as { state: string; workerId: string; operation: string | null };
    expect(after).toMatchObject({ state: "running", operation: null });
    expect(after.workerId).not.toBe(before.workerId);

    const back = await ferry(["vm", "migrate", name, "--worker", before.workerId]);
    expect(back).toMatchObject({ code: 0, stdout: `vm ${name} (${vmId}) is running on ${before.workerId}\n` });
    const nowhere = await ferry(["vm", "migrate", name, "--worker", before.workerId]);
    expect(nowhere).toMatchObject({ code: 1, stderr: expect.stringContaining(`already runs on worker ${before.workerId}`) });
  });

  it("stops the vm, and reports the API's refusal of a second stop with exit 1", async () => {
    const stopped = await ferry(["vm", "stop", name, "--json"]);
    expect(stopped.code).toBe(0);
    expect(JSON.parse(stopped.stdout)).toMatchObject({ id: vmId, state: "stopped", desiredState: "stopped", operation: null });
    const again = await ferry(["vm", "stop", name]);
    expect(again).toMatchObject({ code: 1, stderr: `ferry: cannot stop vm ${name}: it is already stopped\n` });
  });

  it("deletes the vm", async () => {
    const deleted = await ferry(["vm", "delete", vmId]);
    expect(deleted).toMatchObject({ code: 0, stdout: `vm ${name} (${vmId}) is deleted\n` });
    const list = await ferry(["vm", "list", "--json"]);
    expect((JSON.parse(list.stdout) as { items: { id: string }[] }).items.map((vm) => vm.id)).not.toContain(vmId);
  });

  it("returns at once with --no-wait", async () => {
    const created = await ferry(["vm", "create", "--name", `${name}-nowait`, "--image", "tiny", "--vcpus", "1", "--memory", "256", "--no-wait", "--json"]);
    expect(created.code).toBe(0);
    const vm = JSON.parse(created.stdout) as { id: string; state: string };
    expect(vm.state).toBe("pending");
    const deleted = await ferry(["vm", "delete", vm.id, "--json"]);
    expect(JSON.parse(deleted.stdout)).toMatchObject({ id: vm.id, state: "deleted" });
  });

  it("lists the projects with role, quota and usage, and creates a vm in the project named by --project", async () => {
    const before = await ferry(["project", "list", "--json"]);
    expect(before.code).toBe(0);
    type Listed = { id: string; organizationId: string; name: string; role: string; quota: { vms: number }; usage: { vms: number } };
    const defaultProject = (JSON.parse(before.stdout) as { items: Listed[] }).items.find((p) => p.organizationId === "default");
    expect(defaultProject).toMatchObject({ name: "default", role: "owner" });

    // Another organization's project: the admin's token (cluster:admin) sees every project.
    const email = `cli-owner-${process.pid}@example.com`;
    expect((await cluster.api("POST", "/users", { email, name: "CLI owner", password: "cli-owner-password" })).status).toBe(200);
    const organization = await cluster.api<{ id: string }>("POST", "/organizations", { name: `cli-org-${process.pid}`, ownerEmail: email });
    expect(organization.status).toBe(200);
    const project = await cluster.api<{ id: string }>("POST", `/organizations/${organization.body.id}/projects`, { name: "lab" });
    expect(project.status).toBe(200);

    const listed = await ferry(["project", "list"]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^ORGANIZATION\s+PROJECT\s+ROLE\s+VMS\s+VCPUS\s+MEMORY\s+GUEST STATES\s+ID$/m);
    expect(listed.stdout).toMatch(new RegExp(`^cli-org-${process.pid}\\s+lab\\s+owner\\s+0/\\d+\\s+0/\\d+\\s+0 GiB/\\S+ \\S+\\s+0 B/\\S+ \\S+\\s+${project.body.id}$`, "m"));
    expect(listed.stdout).toMatch(new RegExp(`^default\\s+default\\s+owner\\s+.*${defaultProject!.id}$`, "m"));

    const created = await ferry(["vm", "create", "--name", `${name}-lab`, "--image", "tiny", "--vcpus", "1", "--memory", "256", "--project", project.body.id, "--no-wait", "--json"]);
    expect(created.code).toBe(0);
    const vm = JSON.parse(created.stdout) as { id: string; projectId: string };
    expect(vm.projectId).toBe(project.body.id);
    const inLab = (JSON.parse((await ferry(["project", "list", "--json"])).stdout) as { items: Listed[] }).items.find((p) => p.id === project.body.id);
    expect(inLab?.usage.vms).toBe(1);
    expect((await ferry(["vm", "delete", vm.id, "--json"])).code).toBe(0);

    const nowhere = await ferry(["vm", "create", "--name", `${name}-nowhere`, "--image", "tiny", "--vcpus", "1", "--memory", "256", "--project", "no-such-project"]);
    expect(nowhere).toMatchObject({ code: 1, stderr: expect.stringContaining('no project with id "no-such-project" is visible to you') });
  });
});

describe("ferry template and ferry class", () => {
  const source = `cli-lab-${process.pid}`;
  const templateName = `cli-template-${process.pid}`;
  const className = `cli-class-${process.pid}`;
  type Seat = { id: string; email: string; vmId: string | null; extraMinutes: number };
  type ClassJson = { id: string; name: string; status: string; seatCount: number; templateName: string; seats: Seat[] };

  it("publishes a running vm as a template, waiting until its golden point is ready", async () => {
    expect((await ferry(["vm", "create", "--name", source, "--image", "tiny", "--vcpus", "1", "--memory", "256"])).code).toBe(0);
    const published = await ferry(["template", "publish", source, "--name", templateName, "--json"]);
    expect(published.stderr).toMatch(new RegExp(`^template ${templateName} version 1: ready$`, "m"));
    expect(published.code).toBe(0);
    const template = JSON.parse(published.stdout) as { id: string; name: string; versions: { version: number; status: string }[] };
    expect(template).toMatchObject({ name: templateName, versions: [{ version: 1, status: "ready" }] });

    const listed = await ferry(["template", "list", "--json"]);
    expect((JSON.parse(listed.stdout) as { items: { id: string }[] }).items.map((t) => t.id)).toContain(template.id);
    const table = await ferry(["template", "list"]);
    expect(table.stdout).toMatch(new RegExp(`^${templateName}\\s+1\\s+ready\\s+tiny\\s+256 MiB\\s+\\S+ MiB\\s+${template.id}$`, "m"));
    const missingName = await ferry(["template", "publish", source]);
    expect(missingName).toMatchObject({ code: 2, stderr: expect.stringContaining("missing --name") });
  }, 180_000);

  it("creates a class with a roster, adds a student, lists and shows it", async () => {
    const opens = new Date(Date.now() - 60_000).toISOString();
    // Closing well after the students' 60 minutes could run out, so each has exactly 1h00m left.
    const closes = new Date(Date.now() + 3 * 3_600_000).toISOString();
    const base = ["class", "create", "--template", templateName, "--name", className, "--opens", opens, "--closes", closes, "--session", "30", "--total", "60"];
    const created = await ferry([...base, "--emails", "ada@example.com, bob@example.com", "--json"]);
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ name: className, status: "scheduled", templateName, seatCount: 2 });
    const again = await ferry(base);
    expect(again.code).toBe(1);
    const badTime = await ferry(["class", "create", "--template", templateName, "--name", "x", "--opens", "monday", "--closes", closes, "--session", "30", "--total", "60"]);
    expect(badTime).toMatchObject({ code: 2, stderr: expect.stringContaining("--opens monday is not a date and time") });

    const added = await ferry(["class", "roster", "add", className, "--emails", "cy@example.com", "--json"]);
    expect(added.code).toBe(0);
    expect((JSON.parse(added.stdout) as ClassJson).seats.map((s) => s.email).sort()).toEqual(["ada@example.com", "bob@example.com", "cy@example.com"]);

    const list = await ferry(["class", "list"]);
    expect(list.stdout).toMatch(new RegExp(`^${className}\\s+scheduled\\s+3\\s+${templateName} v1\\s`, "m"));
    const shown = await ferry(["class", "show", className]);
    expect(shown.stdout).toMatch(new RegExp(`^status:\\s+scheduled$`, "m"));
    expect(shown.stdout).toMatch(/^ada@example\.com\s+-\s+-\s+-\s+1h00m\s+30m\s+-\s+\S+$/m);
    const missing = await ferry(["class", "show", "no-such-class"]);
    expect(missing).toMatchObject({ code: 1, stderr: expect.stringContaining('no class named "no-such-class"') });
  });

  it("starts, extends, resets, links a student and ends the class", async () => {
    const started = await ferry(["class", "start", className, "--no-prewarm", "--json"]);
    expect(started.code).toBe(0);
    const startedClass = JSON.parse(started.stdout) as ClassJson;
    expect(startedClass.status).toBe("started");
    expect(startedClass.seats.every((s) => s.vmId === null)).toBe(true);

    const extended = await ferry(["class", "extend", className, "--minutes", "15", "--students", "ada@example.com", "--json"]);
    expect(extended.code).toBe(0);
    const extra = Object.fromEntries((JSON.parse(extended.stdout) as ClassJson).seats.map((s) => [s.email, s.extraMinutes]));
    expect(extra).toEqual({ "ada@example.com": 15, "bob@example.com": 0, "cy@example.com": 0 });
    const nobody = await ferry(["class", "extend", className, "--minutes", "15", "--students", "zed@example.com"]);
    expect(nobody).toMatchObject({ code: 1, stderr: expect.stringContaining(`class ${className} has no student zed@example.com`) });

    const reset = await ferry(["class", "reset", className, "--students", "bob@example.com"]);
    expect(reset).toMatchObject({ code: 0, stdout: `class ${className}: bob@example.com going back to the golden point; not reset:\n  bob@example.com: the student has no vm yet\n` });

    const link = await ferry(["class", "link", className, "ada@example.com"]);
    expect(link.code).toBe(0);
    expect(link.stdout).toMatch(new RegExp(`^${cluster.baseUrl}/labs/link\\?token=\\S+\n$`));

    const ended = await ferry(["class", "end", className]);
    expect(ended).toMatchObject({ code: 0, stdout: expect.stringMatching(new RegExp(`^class ${className} \\(\\S+\\) is ended, 3 students\n$`)) });
    expect((await ferry(["vm", "delete", source])).code).toBe(0);
  }, 120_000);
});
