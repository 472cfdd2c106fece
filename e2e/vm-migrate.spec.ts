import { expect, test } from "@playwright/test";
import { canvasColours, fillCreateVmForm, signIn, step } from "./journey.ts";

// One user journey: with a vm's console open, live-migrate the vm to the other worker from its
// page. The same page keeps showing the guest, noVNC never sees its websocket close, and
// typing into the console reaches the guest on its new worker.

/** What the page's websockets went through: opened console URLs and close events. */
declare global {
  interface Window {
    __consoleSockets: { opened: number; closed: number };
  }
}

test("migrate a vm with its console open: the console stays connected and typing still works", async ({ page }, testInfo) => {
  const name = `e2e-mig-${Date.now().toString(36)}`;
  const marker = `moved-${Math.random().toString(36).slice(2, 8)}`;

  // Count every console websocket the page opens and every close event it sees.
  await page.addInitScript(() => {
    const Native = window.WebSocket;
    window.__consoleSockets = { opened: 0, closed: 0 };
    // A constructor that returns the native socket: noVNC checks the socket's own prototype
    // for send/close, so a subclass would not do.
    const CountingWebSocket = function (url: string | URL, protocols?: string | string[]) {
      const socket = new Native(url, protocols);
      if (String(url).includes("/console")) {
        window.__consoleSockets.opened += 1;
        socket.addEventListener("close", () => (window.__consoleSockets.closed += 1));
      }
      return socket;
    } as unknown as typeof WebSocket;
    Object.assign(CountingWebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3, prototype: Native.prototype });
    window.WebSocket = CountingWebSocket;
  });
  const sockets = () => page.evaluate(() => window.__consoleSockets);

  await page.goto("/");
  await signIn(page);

  await fillCreateVmForm(page, name);
  await page.getByTestId("submit-create").click();
  await page.goto("/");
  await page.getByTestId(`vm-row-${name}`).getByRole("link").first().click();

  await expect(page.getByTestId("vm-state")).toHaveText(/running/, { timeout: 120_000 });
  await expect(page.getByTestId("console-status")).toHaveText("connected", { timeout: 30_000 });
  await expect.poll(() => canvasColours(page), { timeout: 30_000 }).toBeGreaterThan(1);
  // The guest's shell is up once it ticks on the serial port.
  await expect(page.getByTestId("serial-log")).toContainText("ferry-tick", { timeout: 60_000 });
  const source = (await page.getByTestId("vm-worker").textContent())?.trim() ?? "";
  expect(source).toMatch(/^w[12]$/);
  const target = source === "w1" ? "w2" : "w1";
  expect(await sockets()).toEqual({ opened: 1, closed: 0 });
  await step(page, testInfo, "01-console-before");

  await page.getByTestId("migrate-target").selectOption(target);
  await page.getByTestId("action-migrate").click();
  await expect(page.getByTestId("vm-worker")).toHaveText(target, { timeout: 60_000 });
  await expect(page.getByTestId("vm-state")).toHaveText(/running/);
  await step(page, testInfo, "02-migrated");

  // Same page, same websocket: never closed, never reopened, still connected and drawing.
  expect(await sockets()).toEqual({ opened: 1, closed: 0 });
  await expect(page.getByTestId("console-status")).toHaveText("connected");
  await expect.poll(() => canvasColours(page), { timeout: 10_000 }).toBeGreaterThan(1);

  await page.getByTestId("console-canvas").click();
  await page.keyboard.type(`echo ${marker} > /dev/ttyS0`, { delay: 40 });
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("serial-log")).toContainText(marker, { timeout: 30_000 });
  expect(await sockets()).toEqual({ opened: 1, closed: 0 });
  await step(page, testInfo, "03-typed-after-move");

  await page.getByTestId("action-stop").click();
  await expect(page.getByTestId("vm-state")).toHaveText(/stopped/, { timeout: 60_000 });
  page.once("dialog", (dialog) => void dialog.accept());
  await page.getByTestId("action-delete").click();
  await page.goto("/");
  await expect(page.getByTestId(`vm-row-${name}`)).toHaveCount(0, { timeout: 60_000 });
});
