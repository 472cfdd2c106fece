import { describe, expect, it } from "vitest";

import { RfbClientStream, fullUpdateRequest, withoutStatefulEncodings } from "./rfb-client-stream.ts";

const handshake = new Uint8Array([...new TextEncoder().encode("RFB 003.008\n"), 1, 1]);
const setPixelFormat = new Uint8Array(20); // type 0
const setEncodings = (...encodings: number[]) => {
  const out = new Uint8Array(4 + 4 * encodings.length);
  const view = new DataView(out.buffer);
  out[0] = 2;
  view.setUint16(2, encodings.length);
  encodings.forEach((e, i) => view.setInt32(4 + 4 * i, e));
  return out;
};
const keyEvent = new Uint8Array([4, 1, 0, 0, 0, 0, 0, 0x61]);
const pointer = new Uint8Array([5, 0, 0, 1, 0, 2]);
const qemuKey = new Uint8Array([255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 0x1e]);
const cutText = new Uint8Array([6, 0, 0, 0, 0, 0, 0, 2, 0x68, 0x69]);

function feed(stream: RfbClientStream, bytes: Uint8Array, chunk: number): Uint8Array[] {
  const units: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += chunk) units.push(...stream.push(bytes.subarray(i, i + chunk)));
  return units;
}

const concat = (...parts: Uint8Array[]) => new Uint8Array(parts.flatMap((p) => [...p]));

describe("RfbClientStream", () => {
  it.each([1, 3, 7, 1000])("cuts the handshake and messages into whole units, fed %i bytes at a time", (chunk) => {
    const stream = new RfbClientStream();
    const units = feed(stream, concat(handshake, setPixelFormat, setEncodings(0, 5, -258), keyEvent, pointer, qemuKey, cutText), chunk);
    expect(units.map((u) => u.length)).toEqual([12, 1, 1, 20, 16, 8, 6, 12, 10]);
    expect(stream.movable).toBe(true);
    expect(stream.pixelFormat).toEqual(setPixelFormat);
    expect(stream.encodings).toEqual(setEncodings(0, 5, -258));
  });

  it("keeps the browser off encodings whose zlib state lives as long as one server connection", () => {
    const stream = new RfbClientStream();
    const units = stream.push(concat(handshake, setEncodings(7, -260, 16, 6, 17, 5, 0, -223, -258)));
    expect(units.at(-1)).toEqual(setEncodings(5, 0, -223, -258));
    expect(stream.encodings).toEqual(setEncodings(5, 0, -223, -258));
    expect(withoutStatefulEncodings(setEncodings(7))).toEqual(setEncodings());
  });

  it("passes an unknown message and everything after it through, and says the session cannot move", () => {
    const stream = new RfbClientStream();
    const units = stream.push(concat(handshake, new Uint8Array([99, 1, 2, 3]), keyEvent));
    expect(concat(...units)).toEqual(concat(handshake, new Uint8Array([99, 1, 2, 3]), keyEvent));
    expect(stream.movable).toBe(false);
    expect(stream.opaqueReason).toBe("the browser sent client message type 99, which the gateway does not know");
  });

  it("follows only security type None", () => {
    const stream = new RfbClientStream();
    stream.push(new Uint8Array([...new TextEncoder().encode("RFB 003.008\n"), 2]));
    expect(stream.movable).toBe(false);
    expect(stream.opaqueReason).toBe("the browser chose security type 2; only None (1) is followed");
  });

  describe("view-only", () => {
    const updateRequest = new Uint8Array([3, 1, 0, 0, 0, 0, 2, 208, 1, 144]);
    const continuousUpdates = new Uint8Array([150, 1, 0, 0, 0, 0, 2, 208, 1, 144]);
    const fence = new Uint8Array([248, 0, 0, 0, 0, 0, 0, 1, 2, 0xaa, 0xbb]);
    const desktopSize = new Uint8Array([251, 0, 2, 208, 1, 144, 1, 0, ...new Uint8Array(16)]);
    const audio = new Uint8Array([255, 1, 0, 2, 1, 2, 0, 0, 0xac, 0x44]);
    const extendedCutText = new Uint8Array([6, 0, 0, 0, 0xff, 0xff, 0xff, 0xfc, 1, 2, 3, 4]);

    it.each([1, 2, 5, 1000])("forwards the handshake and screen requests and drops all input, fed %i bytes at a time", (chunk) => {
      const stream = new RfbClientStream({ viewOnly: true });
      const all = concat(
        handshake, setPixelFormat, keyEvent, setEncodings(0, -258), pointer, updateRequest, qemuKey, cutText,
        extendedCutText, desktopSize, audio, continuousUpdates, fence, keyEvent, updateRequest,
      );
      const units = feed(stream, all, chunk);
      expect(units).toEqual([
        handshake.subarray(0, 12), handshake.subarray(12, 13), handshake.subarray(13),
        setPixelFormat, setEncodings(0, -258), updateRequest, continuousUpdates, fence, updateRequest,
      ]);
      expect(stream.dropped).toBe(8);
      expect(stream.movable).toBe(true);
    });

    it("passes a control browser's input through", () => {
      const stream = new RfbClientStream({ viewOnly: false });
      expect(stream.push(concat(handshake, keyEvent, pointer, desktopSize))).toHaveLength(6);
      expect(stream.dropped).toBe(0);
    });

    it("forwards nothing once a message cannot be followed, not even what comes after", () => {
      const stream = new RfbClientStream({ viewOnly: true });
      expect(stream.push(concat(handshake, new Uint8Array([99, 1, 2, 3]), keyEvent))).toHaveLength(3);
      expect(stream.push(concat(updateRequest, keyEvent))).toEqual([]);
      expect(stream.phase).toBe("opaque");
      expect(stream.opaqueReason).toBe("the browser sent client message type 99, which the gateway does not know");
    });

    it("forwards nothing after a security type other than None", () => {
      const stream = new RfbClientStream({ viewOnly: true });
      expect(stream.push(new Uint8Array([...new TextEncoder().encode("RFB 003.008\n"), 2, ...keyEvent]))).toHaveLength(2);
      expect(stream.push(keyEvent)).toEqual([]);
    });
  });

  it("builds a non-incremental update request for the whole screen", () => {
    expect([...fullUpdateRequest(1280, 800)]).toEqual([3, 0, 0, 0, 0, 0, 5, 0, 3, 32]);
  });
});
