// The browser → server half of an RFB session, cut into whole handshake steps and messages.
// The gateway needs it to move a console to another VNC server (a live migration): it must
// know what the browser negotiated (SetPixelFormat, SetEncodings) to replay it, and it must
// only ever hand the new server whole messages. It also keeps the browser off the encodings
// whose zlib streams live as long as one server connection (Zlib, Tight, ZRLE…): a decoder
// carrying such a stream from the old server would choke on the new server's first rectangle.
// For a view-only console it is also the filter: only messages that ask for the screen pass.

/** Encodings whose decoder state spans the connection (RFC 6143 §7.7, noVNC's decoders). */
const connectionStatefulEncodings = new Set([6 /* Zlib */, 7 /* Tight */, 16 /* ZRLE */, 17 /* ZYWRLE */, -260 /* TightPNG */]);

/**
 * What a view-only browser may send once the handshake is done: SetPixelFormat (0),
 * SetEncodings (2), FramebufferUpdateRequest (3), EnableContinuousUpdates (150) and
 * ClientFence (248). Everything else acts on the guest: KeyEvent (4), PointerEvent (5),
 * ClientCutText (6), SetDesktopSize (251), QEMU's key and audio messages (255).
 */
const viewerMessageTypes = new Set([0, 2, 3, 150, 248]);

export type RfbClientPhase = "version" | "security" | "clientInit" | "messages" | "opaque";

/** Cuts the browser's RFB bytes into units; remembers the pixel format and encodings it asked for. */
export class RfbClientStream {
  phase: RfbClientPhase = "version";
  /** the browser's last SetPixelFormat message, as sent */
  pixelFormat: Uint8Array | undefined;
  /** the browser's last SetEncodings message, without connection-stateful encodings */
  encodings: Uint8Array | undefined;
  /** why the stream could not be followed (phase "opaque"): such a session cannot move */
  opaqueReason: string | undefined;
  /** how many of a view-only browser's messages were dropped (input it may not send) */
  dropped = 0;
  #pending: Uint8Array = new Uint8Array(0);

  /** `viewOnly`: drop every message that would act on the guest, and anything that cannot be followed. */
  constructor(readonly options: { viewOnly?: boolean } = {}) {}

  /** A session whose messages we followed from the start can be moved to another server. */
  get movable(): boolean {
    return this.phase === "messages";
  }

  /** Take bytes from the browser; returns the whole units now complete, ready to forward. */
  push(chunk: Uint8Array): Uint8Array[] {
    // A stream we cannot cut into messages cannot be filtered: a view-only browser's goes nowhere.
    if (this.phase === "opaque") return this.options.viewOnly ? [] : [chunk];
    this.#pending = this.#pending.length === 0 ? chunk : concat(this.#pending, chunk);
    const units: Uint8Array[] = [];
    for (;;) {
      const size = this.#nextSize();
      if (size === undefined || size > this.#pending.length) break;
      const unit = this.#pending.subarray(0, size);
      this.#pending = this.#pending.subarray(size);
      const taken = this.#take(unit);
      if (taken) units.push(taken);
      if ((this.phase as RfbClientPhase) === "opaque") {
        if (this.#pending.length > 0 && !this.options.viewOnly) units.push(this.#pending);
        this.#pending = new Uint8Array(0);
        break;
      }
    }
    return units;
  }

  /** Bytes needed for the next unit, or undefined until enough has arrived to tell. */
  #nextSize(): number | undefined {
    const p = this.#pending;
    switch (this.phase) {
      case "version":
        return 12;
      case "security":
      case "clientInit":
        return 1;
      case "opaque":
        return undefined;
      case "messages":
        break;
    }
    if (p.length < 1) return undefined;
    const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
    const need = (bytes: number) => p.length >= bytes;
    switch (p[0]) {
      case 0: // SetPixelFormat
        return 20;
      case 2: // SetEncodings
        return need(4) ? 4 + 4 * view.getUint16(2) : undefined;
      case 3: // FramebufferUpdateRequest
        return 10;
      case 4: // KeyEvent
        return 8;
      case 5: // PointerEvent
        return 6;
      case 6: // ClientCutText (a negative length is the extended form: its size is the absolute value)
        return need(8) ? 8 + Math.abs(view.getInt32(4)) : undefined;
      case 150: // EnableContinuousUpdates
        return 10;
      case 248: // ClientFence
        return need(9) ? 9 + p[8]! : undefined;
      case 251: // SetDesktopSize
        return need(8) ? 8 + 16 * p[6]! : undefined;
      case 255: {
        // QEMU client messages: 0 extended key event, 1 audio (operation 2 carries a format)
        if (!need(2)) return undefined;
        if (p[1] === 0) return 12;
        if (p[1] === 1) return need(4) ? (view.getUint16(2) === 2 ? 10 : 4) : undefined;
        return this.#lose(`QEMU client message subtype ${p[1]}`);
      }
      default:
        return this.#lose(`client message type ${p[0]}`);
    }
  }

  #lose(what: string): number {
    this.phase = "opaque";
    this.opaqueReason = `the browser sent ${what}, which the gateway does not know`;
    return this.#pending.length;
  }

  /** Follow one unit; returns what to forward (undefined: a view-only browser's input, dropped). */
  #take(unit: Uint8Array): Uint8Array | undefined {
    switch (this.phase) {
      case "opaque":
        return this.options.viewOnly ? undefined : unit;
      case "version": {
        const version = new TextDecoder().decode(unit);
        // 3.3 has no security choice from the client; 3.7 and 3.8 do.
        this.phase = version === "RFB 003.003\n" ? "clientInit" : "security";
        return unit;
      }
      case "security":
        if (unit[0] !== 1) {
          this.phase = "opaque";
          this.opaqueReason = `the browser chose security type ${unit[0]}; only None (1) is followed`;
          return unit;
        }
        this.phase = "clientInit";
        return unit;
      case "clientInit":
        this.phase = "messages";
        return unit;
      default:
        break;
    }
    if (this.options.viewOnly && !viewerMessageTypes.has(unit[0]!)) {
      this.dropped += 1;
      return undefined;
    }
    if (unit[0] === 0) {
      this.pixelFormat = unit.slice();
      return unit;
    }
    if (unit[0] === 2) {
      this.encodings = withoutStatefulEncodings(unit);
      return this.encodings;
    }
    return unit;
  }
}

/** A SetEncodings message minus the encodings whose state spans a server connection. */
export function withoutStatefulEncodings(message: Uint8Array): Uint8Array {
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const kept: number[] = [];
  for (let i = 0; i < view.getUint16(2); i++) {
    const encoding = view.getInt32(4 + 4 * i);
    if (!connectionStatefulEncodings.has(encoding)) kept.push(encoding);
  }
  const out = new Uint8Array(4 + 4 * kept.length);
  const outView = new DataView(out.buffer);
  out[0] = 2;
  outView.setUint16(2, kept.length);
  kept.forEach((encoding, i) => outView.setInt32(4 + 4 * i, encoding));
  return out;
}

/** A FramebufferUpdateRequest for the whole screen, non-incremental: the new server sends it all. */
export function fullUpdateRequest(width: number, height: number): Uint8Array {
  const out = new Uint8Array(10);
  const view = new DataView(out.buffer);
  out[0] = 3;
  out[1] = 0;
  view.setUint16(6, width);
  view.setUint16(8, height);
  return out;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
