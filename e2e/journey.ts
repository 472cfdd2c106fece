import { expect, type Page, type TestInfo } from "@playwright/test";

// Steps every user journey shares: signing in, filling the create-vm form, recording a step
// and reading the console canvas.

const email = process.env.FERRY_ADMIN_EMAIL ?? "admin@ferry.local";
const password = process.env.FERRY_ADMIN_PASSWORD ?? "ferry-admin-password";

/** Signs in (as the admin unless told) on the sign-in page the browser is on; resolves once the vm list shows. */
export async function signIn(page: Page, account: { email: string; password: string } = { email, password }): Promise<void> {
  await page.getByTestId("sign-in-email").fill(account.email);
  await page.getByTestId("sign-in-password").fill(account.password);
  await page.getByTestId("sign-in-submit").click();
  await expect(page.getByTestId("create-vm")).toBeVisible();
}

/** Opens the create-vm form and fills it for a tiny vm named `name`, without submitting it. */
export async function fillCreateVmForm(page: Page, name: string): Promise<void> {
  await page.getByTestId("create-vm").click();
  await page.getByTestId("field-name").fill(name);
  await page.getByTestId("field-image").selectOption("tiny");
  await page.getByTestId("field-vcpus").fill("1");
  await page.getByTestId("field-memory").fill("256");
  await page.getByTestId("field-profile").selectOption("standard");
}

/** A screenshot of the step, kept as a file in the test's output folder and in the report. */
export async function step(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  const path = testInfo.outputPath(`${name}.png`);
  await page.screenshot({ path, fullPage: true });
  await testInfo.attach(name, { path, contentType: "image/png" });
}

/** Counts distinct colours on the noVNC canvas: a blank or black canvas has one. */
export async function canvasColours(page: Page): Promise<number> {
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
