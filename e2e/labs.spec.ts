import { createHash } from "node:crypto";
import { expect, test, type Page } from "@playwright/test";
import { canvasColours, signIn, step } from "./journey.ts";

// One user journey of a hosted lab: the instructor prepares a tiny vm (a loop on its screen that
// prints the uptime every second), publishes it as a lab template, creates a class of five in the
// portal and starts it. The wall shows five thumbnails that change as the clones run on from the
// golden point, and a student signs in and finds the instructions, the console and the time left.

const students = 5;

/** A REST call with the page's session that must succeed; its JSON body. */
async function api<T>(page: Page, method: string, path: string, body?: unknown): Promise<T> {
  const response = await page.request.fetch(`/api/v1${path}`, { method, ...(body === undefined ? {} : { data: body }) });
  expect(response.status(), `${method} /api/v1${path} answered ${response.status()}: ${await response.text()}`).toBeLessThan(300);
  return (await response.json()) as T;
}

interface ClassView {
  id: string;
  seats: { id: string; email: string; vmId: string | null; vmState: string | null }[];
}

test("a class of five: the wall shows five live thumbnails, a student sees the console and the time left", async ({ page, browser }, testInfo) => {
  const suffix = Date.now().toString(36);
  const emails = Array.from({ length: students }, (_, i) => `student${i + 1}-${suffix}@example.com`);
  const student = { email: emails[0]!, password: `student-password-${suffix}` };
  const className = `lab-${suffix}`;

  await page.goto("/");
  await signIn(page);

  // The instructor's vm, with a loop drawing on its screen every second.
  const projects = await api<{ items: { id: string; name: string }[] }>(page, "GET", "/projects");
  const projectId = projects.items.find((p) => p.name === "default")!.id;
  const source = await api<{ id: string }>(page, "POST", "/vms", { name: `lab-source-${suffix}`, image: "tiny", vcpus: 1, memoryMiB: 256, projectId });
  await page.goto(`/vms/${source.id}`);
  await expect(page.getByTestId("vm-state")).toHaveText(/running/, { timeout: 120_000 });
  await expect(page.getByTestId("console-status")).toHaveText("connected", { timeout: 30_000 });
  await expect(page.getByTestId("serial-log")).toContainText("ferry-tick", { timeout: 60_000 });
  await page.getByTestId("console-canvas").click();
  await page.keyboard.type("while true; do cat /proc/uptime; sleep 1; done", { delay: 30 });
  await page.keyboard.press("Enter");
  await step(page, testInfo, "01-source-vm");

  const template = await api<{ id: string }>(page, "POST", "/templates", { vmId: source.id, name: `lab-template-${suffix}` });
  const versionStatus = async () => {
    const list = await api<{ items: { id: string; versions: { status: string; statusReason: string | null }[] }[] }>(page, "GET", `/templates?projectId=${projectId}`);
    const version = list.items.find((t) => t.id === template.id)?.versions[0];
    return version ? `${version.status}${version.statusReason ? `: ${version.statusReason}` : ""}` : "missing";
  };
  await expect.poll(versionStatus, { timeout: 90_000, intervals: [1000] }).toBe("ready");
  await api(page, "POST", "/users", { email: student.email, name: "Sam Student", password: student.password });

  // The class, made in the portal: five students on the roster.
  await page.getByTestId("nav-classes").click();
  await page.getByTestId("class-new").click();
  await page.getByTestId("class-field-name").fill(className);
  await page.getByTestId("class-field-template").selectOption({ label: `lab-template-${suffix}` });
  await page.getByTestId("class-field-instructions").fill("# Uptime lab\n\nWatch the **uptime** grow, then run `uname -a`.");
  await page.getByTestId("class-field-emails").fill(emails.join("\n"));
  await step(page, testInfo, "02-new-class");
  await page.getByTestId("class-submit").click();
  await expect(page.getByTestId("class-name")).toHaveText(className);
  const classId = new URL(page.url()).pathname.split("/").at(-1)!;
  await expect(page.getByTestId("class-seat-count")).toHaveText(String(students));

  // Every thumbnail the wall receives, hashed per seat: a screen that runs on gives new pictures.
  const pictures = new Map<string, Set<string>>();
  page.on("response", async (response) => {
    const seatId = /\/api\/classes\/[^/]+\/seats\/([^/]+)\/thumbnail/.exec(response.url())?.[1];
    if (seatId === undefined || response.status() !== 200) return;
    const body = await response.body().catch(() => null);
    if (body === null || body.length === 0) return;
    pictures.set(seatId, (pictures.get(seatId) ?? new Set()).add(createHash("sha256").update(body).digest("hex")));
  });

  await page.getByTestId("class-start").click();
  await expect(page.getByTestId("class-status")).toHaveText("started");
  const running = async () => (await api<ClassView>(page, "GET", `/classes/${classId}`)).seats.filter((s) => s.vmState === "running").length;
  await expect.poll(running, { timeout: 120_000, intervals: [1000] }).toBe(students);
  await expect(page.getByTestId("wall").getByTestId("wall-thumbnail")).toHaveCount(students);
  for (const thumbnail of await page.getByTestId("wall-thumbnail").all()) await expect(thumbnail).toBeVisible({ timeout: 60_000 });
  await step(page, testInfo, "03-wall");
  const seatIds = (await api<ClassView>(page, "GET", `/classes/${classId}`)).seats.map((s) => s.id);
  const changing = () => seatIds.filter((id) => (pictures.get(id)?.size ?? 0) >= 2).length;
  await expect.poll(changing, { timeout: 60_000, intervals: [1000] }).toBe(students);
  await step(page, testInfo, "04-wall-changed");

  // The student: their lab under "My labs", the instructions beside the console, the time left.
  const studentContext = await browser.newContext({ baseURL: testInfo.project.use.baseURL });
  const studentPage = await studentContext.newPage();
  await studentPage.goto("/");
  await signIn(studentPage, student);
  await studentPage.getByTestId("nav-labs").click();
  await studentPage.getByTestId(`labs-seat-${className}`).getByRole("link").click();
  await expect(studentPage.getByTestId("lab-instructions").getByRole("heading", { name: "Uptime lab" })).toBeVisible();
  await expect(studentPage.getByTestId("lab-instructions").locator("strong")).toHaveText("uptime");
  await expect(studentPage.getByTestId("console-status")).toHaveText("connected", { timeout: 30_000 });
  await expect.poll(() => canvasColours(studentPage), { timeout: 30_000 }).toBeGreaterThan(1);
  await expect(studentPage.getByTestId("lab-time-left")).toHaveText(/^\d+ (h|min|s)/);
  // The session's clock (to the second under an hour) runs down while the student watches.
  const before = await studentPage.getByTestId("lab-session-left").textContent();
  await expect(studentPage.getByTestId("lab-session-left")).not.toHaveText(before!, { timeout: 10_000 });
  await step(studentPage, testInfo, "05-student-lab");
  await studentContext.close();

  // The class ends (its vms suspended), then every vm goes, so the next journey has the workers to itself.
  await api(page, "POST", `/classes/${classId}/end`, {});
  const vmIds = [source.id, ...(await api<ClassView>(page, "GET", `/classes/${classId}`)).seats.flatMap((s) => (s.vmId ? [s.vmId] : []))];
  const state = async (id: string) => {
    const response = await page.request.get(`/api/v1/vms/${id}`);
    return response.status() === 404 ? "deleted" : ((await response.json()) as { state: string }).state;
  };
  for (const id of vmIds) await expect.poll(() => state(id), { timeout: 60_000, intervals: [1000] }).toMatch(/suspended|stopped|failed|deleted/);
  for (const id of vmIds) await api(page, "DELETE", `/vms/${id}`);
  for (const id of vmIds) await expect.poll(() => state(id), { timeout: 60_000, intervals: [1000] }).toBe("deleted");
});
