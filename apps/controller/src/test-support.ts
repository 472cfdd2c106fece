// Test support for cluster tests: typing on a vm's console. The worker holds the vm's only QMP
// connection, so a test types through the vm's VNC socket instead (QEMU's VNC server takes
// several clients), with QEMU extended key events: QEMU drops plain keysyms here (see the
// portal's us-keyboard.ts), and the guest reads the XT scan codes with its US keymap.
import { once } from "node:events";
import { createConnection, type Socket } from "node:net";

// XT (set 1) scan codes of the keys the tests type, US layout.
const scanCodes: Record<string, number> = {
  ...Object.fromEntries("qwertyuiop".split("").map((c, i) => [c, 0x10 + i])),
  ...Object.fromEntries("asdfghjkl".split("").map((c, i) => [c, 0x1e + i])),
  ...Object.fromEntries("zxcvbnm".split("").map((c, i) => [c, 0x2c + i])),
  ...Object.fromEntries("1234567890".split("").map((c, i) => [c, 0x02 + i])),
  "-": 0x0c,
  "=": 0x0d,
  " ": 0x39,
  "\n": 0x1c,
  "/": 0x35,
  ".": 0x34,
  ";": 0x27,
};
const shifted: Record<string, string> = { ">": ".", _: "-", "&": "7" };
const shiftKey = { keysym: 0xffe1, code: 0x2a };

async function read(socket: Socket, buffer: { data: Buffer }, bytes: number): Promise<Buffer> {
  while (buffer.data.length < bytes) {
    const [chunk] = (await once(socket, "data")) as [Buffer];
    buffer.data = Buffer.concat([buffer.data, chunk]);
  }
  const out = buffer.data.subarray(0, bytes);
  buffer.data = buffer.data.subarray(bytes);
  return out;
}

/** Types `text` on the vm's VGA console (the guest's root shell) through its VNC socket. */
export async function typeOnConsole(vncSocket: string, text: string): Promise<void> {
  const socket = createConnection(vncSocket);
  await once(socket, "connect");
  const buffer = { data: Buffer.alloc(0) };
  try {
    await read(socket, buffer, 12);
    socket.write("RFB 003.008\n");
    const [count] = await read(socket, buffer, 1);
    const types = await read(socket, buffer, count!);
    if (!types.includes(1)) throw new Error(`the VNC server offers security types ${[...types].join(",")}, not None (1)`);
    socket.write(Buffer.from([1]));
    if ((await read(socket, buffer, 4)).readUInt32BE(0) !== 0) throw new Error("VNC security handshake failed");
    socket.write(Buffer.from([1])); // ClientInit: shared
    const init = await read(socket, buffer, 24);
    await read(socket, buffer, init.readUInt32BE(20));
    // SetEncodings: the QEMU extended key event pseudo-encoding (-258).
    const encodings = Buffer.alloc(8);
    encodings.writeUInt8(2, 0);
    encodings.writeUInt16BE(1, 2);
    encodings.writeInt32BE(-258, 4);
    socket.write(encodings);
    const key = (keysym: number, code: number, down: boolean) => {
      const message = Buffer.alloc(12);
      message.writeUInt8(255, 0);
      message.writeUInt8(0, 1);
      message.writeUInt16BE(down ? 1 : 0, 2);
      message.writeUInt32BE(keysym, 4);
      message.writeUInt32BE(code, 8);
      socket.write(message);
    };
    for (const char of text) {
      const upper = /^[A-Z]$/.test(char);
      const shift = upper || shifted[char] !== undefined;
      const code = scanCodes[upper ? char.toLowerCase() : (shifted[char] ?? char)];
      if (code === undefined) throw new Error(`typeOnConsole cannot type '${char}'`);
      const keysym = char === "\n" ? 0xff0d : char.codePointAt(0)!;
      if (shift) key(shiftKey.keysym, shiftKey.code, true);
      key(keysym, code, true);
      key(keysym, code, false);
      if (shift) key(shiftKey.keysym, shiftKey.code, false);
      // The guest's USB keyboard is polled; a short gap keeps every key.
      await new Promise((resolve) => setTimeout(resolve, 15));
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  } finally {
    socket.destroy();
  }
}
