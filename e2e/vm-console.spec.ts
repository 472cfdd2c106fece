import { expect, test, type Page, type TestInfo } from "@playwright/test";

// One user journey: sign in, create a tiny vm, watch its console draw the guest's screen,
// type a command into it, read the command's effect back from the serial log, stop, delete.

const email = process.env.FERRY_ADMIN_EMAIL ?? "admin@ferry.local";
const password = process.env.FERRY_ADMIN_PASSWORD ?? "ferry-admin-password";

/** A screenshot of the step, kept as a file in the test's output folder and in the report. */
async function step(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  const path = testInfo.outputPath(`${name}.png`);
  await page.screenshot({ path, fullPage: true });
  await testInfo.attach(name, { path, contentType: "image/png" });
}

/** Counts distinct colours on the noVNC canvas: a blank or black canvas has one. */
async function canvasColours(page: Page): Promise<number> {
  return page.getByTestId("console-canvas").evaluate((container) => {
    const canvas = container.querySelector("canvas");
    if (!canvas || canvas.width === 0 || canvas.height === 0) return 0;
    const ctx = canvas.getContext("2d");
    if (!ctx) return 0;
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const colours = new Set<number>();
    for (let i = 0; i < data.length; i += 4 * 7) {
      colours.add((data[i]! << 16) | (data[i + 1]! << 8) | data[i + 2]!);
      if (colours.size > 2) break;
    }
    return colours.size;
  });
}

test("create a vm, use its console, stop and delete it", async ({ page }, testInfo) => {
  const name = `e2e-${Date.now().toString(36)}`;
  const marker = `typed-${Math.random().toString(36).slice(2, 8)}`;

  await page.goto("/");
  await expect(page).toHaveURL(/sign-in/);
  await page.getByTestId("sign-in-email").fill(email);
  await page.getByTestId("sign-in-password").fill(password);
  await page.getByTestId("sign-in-submit").click();
  await expect(page.getByTestId("create-vm")).toBeVisible();
  await step(page, testInfo, "01-signed-in");

  await page.getByTestId("create-vm").click();
  await page.getByTestId("field-name").fill(name);
  await page.getByTestId("field-image").selectOption("tiny");
  await page.getByTestId("field-vcpus").fill("1");
  await page.getByTestId("field-memory").fill("256");
  await page.getByTestId("field-profile").selectOption("standard");
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
