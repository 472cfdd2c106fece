import { expect, test, type APIRequestContext } from "@playwright/test";
import { fillCreateVmForm, signIn, step } from "./journey.ts";

// One user journey across tenants: the admin makes an API token on the default project's page
// and sets up a person and their organization over REST; that owner signs in, sees only their
// own project (none of the default project's vms), makes an API token that is shown once,
// creates a vm in their project, and finds both actions, by them, in the project's audit log.

/** A REST call with a bearer token that must succeed; its JSON body. */
async function api<T>(request: APIRequestContext, token: string, method: string, path: string, body?: unknown): Promise<T> {
  const response = await request.fetch(`/api/v1${path}`, { method, headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { data: body }) });
  expect(response.status(), `${method} /api/v1${path} answered ${response.status()}: ${await response.text()}`).toBeLessThan(300);
  return (await response.json()) as T;
}

test("an owner sees only their project, makes a token once, creates a vm there and finds both in the audit log", async ({ page, request }, testInfo) => {
  const suffix = Date.now().toString(36);
  const owner = { email: `owner-${suffix}@example.com`, password: `owner-password-${suffix}` };
  const organizationName = `acme-${suffix}`;
  const defaultVmName = `e2e-default-${suffix}`;
  const ownerVmName = `e2e-acme-${suffix}`;

  // The admin makes a setup token with the cluster:admin scope on the default project's page.
  await page.goto("/");
  await expect(page).toHaveURL(/sign-in/);
  await signIn(page);
  await expect(page.getByTestId("nav-workers")).toBeVisible();
  await page.getByTestId("project-page-link").click();
  await expect(page.getByTestId("project-name")).toHaveText("default");
  const defaultProjectId = new URL(page.url()).pathname.split("/").at(-1)!;
  await page.getByTestId("token-name").fill(`e2e-setup-${suffix}`);
  await page.getByTestId("token-scope-vms:write").check();
  await page.getByTestId("token-scope-cluster:admin").check();
  await page.getByTestId("token-create-submit").click();
  const adminToken = await page.getByTestId("token-once-value").inputValue();
  expect(adminToken).toMatch(/^ferry_/);
  await step(page, testInfo, "01-admin-setup-token");
  await page.getByTestId("token-once-done").click();

  // Over REST: a vm in the default project, a person, their organization and its project.
  const defaultVm = await api<{ id: string }>(request, adminToken, "POST", "/vms", { name: defaultVmName, image: "tiny", vcpus: 1, memoryMiB: 256, projectId: defaultProjectId });
  await api(request, adminToken, "POST", "/users", { email: owner.email, name: "Olive Owner", password: owner.password });
  const organization = await api<{ id: string }>(request, adminToken, "POST", "/organizations", { name: organizationName, ownerEmail: owner.email });
  const project = await api<{ id: string }>(request, adminToken, "POST", `/organizations/${organization.id}/projects`, { name: "lab" });

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/sign-in/);
  await signIn(page, owner);

  // Only their own project, and none of the default project's vms.
  const switcher = page.getByTestId("project-switcher");
  await expect(switcher.locator("option")).toHaveCount(1);
  await expect(switcher.locator("option")).toHaveText(`${organizationName} / lab (owner)`);
  await expect(page.getByTestId("no-vms")).toBeVisible();
  await expect(page.getByTestId(`vm-row-${defaultVmName}`)).toHaveCount(0);
  await expect(page.getByTestId("quota-vms")).toContainText("0 of");
  await expect(page.getByTestId("nav-workers")).toHaveCount(0);
  await step(page, testInfo, "02-owner-sees-own-project");

  await page.goto("/workers");
  await expect(page.getByTestId("workers-admins-only")).toBeVisible();
  await step(page, testInfo, "03-workers-for-admins-only");

  // A token, shown once: gone after "I have copied it" and after a reload, listed by name.
  await page.getByTestId("project-page-link").click();
  await expect(page.getByTestId("project-name")).toHaveText("lab");
  await expect(page.getByTestId(`member-${owner.email}`).getByTestId("member-role")).toHaveValue("owner");
  await expect(page.getByTestId("token-scope-cluster:admin")).toHaveCount(0);
  const tokenName = `ci-${suffix}`;
  await page.getByTestId("token-name").fill(tokenName);
  await page.getByTestId("token-scope-vms:write").check();
  await page.getByTestId("token-create-submit").click();
  const ownerToken = await page.getByTestId("token-once-value").inputValue();
  expect(ownerToken).toMatch(/^ferry_/);
  await step(page, testInfo, "04-token-shown-once");
  await page.getByTestId("token-once-done").click();
  await expect(page.getByTestId("token-once")).toHaveCount(0);
  await page.reload();
  await expect(page.getByTestId(`token-${tokenName}`)).toContainText("active");
  await expect(page.getByTestId("token-once")).toHaveCount(0);
  await step(page, testInfo, "05-token-listed");

  // The owner's token sees their project only.
  const ownerVms = await api<{ items: { id: string }[] }>(request, ownerToken, "GET", "/vms");
  expect(ownerVms.items).toEqual([]);
  expect((await request.get(`/api/v1/vms/${defaultVm.id}`, { headers: { authorization: `Bearer ${ownerToken}` } })).status()).toBe(404);

  await page.goto("/");
  await fillCreateVmForm(page, ownerVmName);
  await expect(page.getByTestId("create-project")).toContainText(`${organizationName} / lab`);
  await page.getByTestId("submit-create").click();
  await expect(page).toHaveURL(/\/vms\/[0-9a-f-]{36}$/);
  const ownerVmId = new URL(page.url()).pathname.split("/").at(-1)!;
  await page.goto("/");
  await expect(page.getByTestId(`vm-row-${ownerVmName}`)).toBeVisible();
  await expect(page.getByTestId("quota-vms")).toContainText("1 of");
  await step(page, testInfo, "06-vm-created-in-project");

  await page.getByTestId("project-page-link").click();
  const audit = page.getByTestId("audit-log");
  await expect(audit.getByTestId("audit-vm.create")).toContainText(owner.email);
  await expect(audit.getByTestId("audit-vm.create")).toContainText(ownerVmId);
  await expect(audit.getByTestId("audit-token.create")).toContainText(owner.email);
  await expect(audit.getByTestId("audit-vm.create").getByTestId("audit-outcome")).toHaveText("ok");
  await step(page, testInfo, "07-audit-log");

  // Both vms go, so the next journey has the workers to itself.
  for (const id of [ownerVmId, defaultVm.id]) await api(request, adminToken, "DELETE", `/vms/${id}`);
  for (const id of [ownerVmId, defaultVm.id]) {
    const state = async () => {
      const response = await request.get(`/api/v1/vms/${id}`, { headers: { authorization: `Bearer ${adminToken}` } });
      return response.status() === 404 ? "deleted" : ((await response.json()) as { state: string }).state;
    };
    await expect.poll(state, { timeout: 60_000, intervals: [1000] }).toBe("deleted");
  }
});
