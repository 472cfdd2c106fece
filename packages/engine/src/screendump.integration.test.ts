// Vm.screendump on a real tiny guest (TCG): a PNG of the whole screen (the size its VNC server
// announces), which follows what the guest shows and leaves nothing behind in the run folder.
import { once } from "node:events";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { PNG } from "pngjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "./engine.ts";
import { loadImage, specForVm } from "./images.ts";

const imagesDir = process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images";
const suiteDir = mkdtempSync(path.join(tmpdir(), "ferry-screendump-it-"));
let engine: Engine;

/** The screen size QEMU's VNC server announces (RFB 3.8 handshake up to ServerInit). */
async function vncScreenSize(socketPath: string): Promise<[number, number]> {
  const socket = net.connect(socketPath);
  let buffered = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => (buffered = Buffer.concat([new Uint8Array(buffered), new Uint8Array(chunk)])));
  const read = async (count: number): Promise<Buffer> => {
    while (buffered.length < count) await once(socket, "data");
    const out = buffered.subarray(0, count);
    buffered = buffered.subarray(count);
    return out;
  };
  try {
    await read(12);
    socket.write("RFB 003.008\n");
    await read((await read(1))[0]!);
    socket.write(new Uint8Array([1]));
    await read(4);
    socket.write(new Uint8Array([1]));
    const init = await read(24);
    return [init.readUInt16BE(0), init.readUInt16BE(2)];
  } finally {
    socket.destroy();
  }
}

beforeAll(async () => {
  engine = await Engine.open({ runDir: path.join(suiteDir, "run"), accelerator: "tcg" });
});

afterAll(async () => {
  await engine?.shutdown({ graceMs: 0 });
  rmSync(suiteDir, { recursive: true, force: true });
});

describe("Vm.screendump", () => {
  it("returns a PNG of the whole screen that changes when the guest's screen does", async () => {
    const image = await loadImage(imagesDir, "tiny");
    const spec = { ...specForVm({ id: `screendump-${process.pid}`, vcpus: 1, memoryMiB: 256, profile: "standard", cpuModel: "qemu64", image, vmDir: path.join(suiteDir, "vm") }), nics: [] };
    const vm = await engine.start(spec, { bootMarker: image.bootMarker });
    await vm.whenState("running", { timeoutMs: 60_000 });
    // The shell on the console is up once the guest ticks.
    await vm.waitForSerial(/ferry-tick/, { timeoutMs: 30_000 });

    const before = PNG.sync.read(await vm.screendump());
    expect([before.width, before.height]).toEqual(await vncScreenSize(vm.spec.display!.vncSocket));
    // Not a blank screen: some pixel differs from the first one.
    expect(before.data.some((value, i) => i % 4 !== 3 && value !== before.data[i % 4])).toBe(true);

    for (const key of ["e", "c", "h", "o", "spc", "x", "y", "z", "ret"]) {
      await vm.execute("send-key", { keys: [{ type: "qcode", data: key }], "hold-time": 20 });
    }
    const deadline = Date.now() + 15_000;
    let after = PNG.sync.read(await vm.screendump());
    while (after.data.equals(before.data) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      after = PNG.sync.read(await vm.screendump());
    }
    expect(after.data.equals(before.data)).toBe(false);
    expect(readdirSync(path.join(suiteDir, "run"), { recursive: true }).filter((name) => String(name).endsWith(".png"))).toEqual([]);
  }, 90_000);
});
