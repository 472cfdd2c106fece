import { expect, test } from "@playwright/test";
import { canvasColours, fillCreateVmForm, signIn, step } from "./journey.ts";

// One user journey: sign in, create a tiny vm, watch its console draw the guest's screen,
// type a command into it, read the command's effect back from the serial log, stop, delete.

test("create a vm, use its console, stop and delete it", async ({ page }, testInfo) => {
  const name = `e2e-${Date.now().toString(36)}`;
  const marker = `typed-${Math.random().toString(36).slice(2, 8)}`;

  await page.goto("/");
  await expect(page).toHaveURL(/sign-in/);
  await signIn(page);
  await step(page, testInfo, "01-signed-in");

  await fillCreateVmForm(page, name);
  await step(page, testInfo, "02-create-form");
  await page.getByTestId("submit-create").click();

  await page.goto("/");
  const row = page.getByTestId(`vm-row-${name}`);
  await expect(row).toBeVisible();
  await step(page, testInfo, "03-vm-listed");
  await row.getByRole("link").first().click();

  await expect(page.getByTestId("vm-state")).toHaveText(/running/, { timeout: 120_000 });
  await expect(page.getByTestId("console-status")).toHaveText("connected", { timeout: 30_000 });
  await expect.poll(() => canvasColours(page), { timeout: 30_000 }).toBeGreaterThan(1);
  await step(page, testInfo, "04-console-drawn");

  await page.getByTestId("console-canvas").click();
  await page.keyboard.type(`echo ${marker} > /dev/ttyS0`, { delay: 40 });
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("serial-log")).toContainText(marker, { timeout: 30_000 });
  await step(page, testInfo, "05-typed-into-console");

  await page.getByTestId("action-stop").click();
  await expect(page.getByTestId("vm-state")).toHaveText(/stopped/, { timeout: 60_000 });
  await step(page, testInfo, "06-stopped");

  page.once("dialog", (dialog) => void dialog.accept());
  await page.getByTestId("action-delete").click();
  await page.goto("/");
  await expect(page.getByTestId(`vm-row-${name}`)).toHaveCount(0, { timeout: 60_000 });
  await step(page, testInfo, "07-deleted");
});
