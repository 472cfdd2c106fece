import net from "node:net";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startVncGuest, type VncGuest } from "@ferry/engine/testing";
import { signRelayTicket } from "@ferry/tokens";
import { startConsoleRelay, type ConsoleRelay } from "./console-relay.ts";

const secret = "relay-test-secret-0123456789abcdef";
const workerId = "relay-test-worker";
const vmId = `vm-relay-${process.pid}`;
const imagesDir = process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images";
const qemuBinary = process.env.FERRY_QEMU_BINARY ?? "qemu-system-x86_64";

let guest: VncGuest;
let relay: ConsoleRelay;

/** Connect, send `payload`, and collect what comes back until `enough` or the relay closes. */
function exchange(
  address: string,
  payload: string,
  enough: (received: string) => boolean = () => false,
): Promise<{ received: string; closed: boolean; socket: net.Socket }> {
  const [host, port] = address.split(":");
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), host!);
    let received = "";
    const timer = setTimeout(() => reject(new Error(`relay answered only ${JSON.stringify(received)} in 10 s`)), 10_000);
    socket.on("data", (chunk) => {
      received += chunk.toString("latin1");
      if (enough(received)) {
        clearTimeout(timer);
        resolve({ received, closed: false, socket });
      }
    });
    socket.on("error", reject);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ received, closed: true, socket });
    });
    socket.write(payload);
  });
}

beforeAll(async () => {
  guest = await startVncGuest({ imagesDir, qemuBinary });
  relay = await startConsoleRelay({
    host: "127.0.0.1",
    port: 0,
    secret,
    workerId,
    vncSocketFor: (id) => (id === vmId ? guest.vncSocket : undefined),
    log: pino({ level: "silent" }),
  });
});

afterAll(async () => {
  try {
    await relay?.close();
  } finally {
    await guest?.stop();
  }
});

describe("console relay", () => {
  it("publishes host and the ephemeral port it bound", () => {
    expect(relay.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(relay.address).not.toBe("127.0.0.1:0");
  });

  it("answers OK to a valid ticket and then relays QEMU's RFB greeting", async () => {
    const ticket = signRelayTicket({ vmId, workerId, secret });
    const { received, socket } = await exchange(relay.address, `${ticket}\n`, (r) => r.length >= 15);
    expect(received).toBe("OK\nRFB 003.008\n");
    // The client's version travels to QEMU, which answers with its security types (None = 1).
    const security = await new Promise<string>((resolve) => {
      socket.once("data", (chunk) => resolve(chunk.toString("latin1")));
      socket.write("RFB 003.008\n");
    });
    expect(security).toBe("\x01\x01");
    socket.destroy();
  });

  it("relays RFB bytes sent in the same packet as the ticket", async () => {
    const ticket = signRelayTicket({ vmId, workerId, secret });
    const { received, socket } = await exchange(relay.address, `${ticket}\nRFB 003.008\n`, (r) => r.length >= 17);
    expect(received).toBe("OK\nRFB 003.008\n\x01\x01");
    socket.destroy();
  });

  it("refuses a ticket signed for another worker", async () => {
    const ticket = signRelayTicket({ vmId, workerId: "another-worker", secret });
    const { received, closed } = await exchange(relay.address, `${ticket}\n`);
    expect(closed).toBe(true);
    expect(received).toMatch(/^ERR wrong_worker: .*worker another-worker.*\n$/);
  });

  it("refuses a ticket signed with another secret", async () => {
    const ticket = signRelayTicket({ vmId, workerId, secret: "not-the-cluster-secret-0123456789" });
    const { received, closed } = await exchange(relay.address, `${ticket}\n`);
    expect(closed).toBe(true);
    expect(received).toMatch(/^ERR bad_signature: /);
  });

  it("refuses a vm that does not run on this worker", async () => {
    const ticket = signRelayTicket({ vmId: "vm-elsewhere", workerId, secret });
    const { received, closed } = await exchange(relay.address, `${ticket}\n`);
    expect(closed).toBe(true);
    expect(received).toMatch(/^ERR vm_not_here: vm vm-elsewhere /);
  });

  it("refuses a ticket line longer than 4 KiB", async () => {
    const { received, closed } = await exchange(relay.address, "x".repeat(5000));
    expect(closed).toBe(true);
    expect(received).toMatch(/^ERR line_too_long: /);
  });

  it("drops a connection that sends no ticket within 5 s", async () => {
    const started = Date.now();
    const { received, closed } = await exchange(relay.address, "");
    expect(closed).toBe(true);
    expect(received).toMatch(/^ERR timeout: /);
    expect(Date.now() - started).toBeGreaterThanOrEqual(4900);
  });

  it("cuts open console connections on close and stops listening", async () => {
    const ticket = signRelayTicket({ vmId, workerId, secret });
    const { socket } = await exchange(relay.address, `${ticket}\n`, (r) => r.length >= 15);
    const cut = new Promise((resolve) => socket.once("close", resolve));
    const address = relay.address;
    await relay.close();
    await cut;
    await expect(exchange(address, "x\n")).rejects.toThrow(/ECONNREFUSED/);
  });
});
