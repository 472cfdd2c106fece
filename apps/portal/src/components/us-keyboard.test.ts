import { describe, expect, it } from "vitest";
import { keyPressOf, typeAsUsKeyboard } from "./us-keyboard.ts";

describe("keyPressOf", () => {
  it.each([
    ["e", { keysym: 0x65, code: "KeyE", shift: false }],
    ["S", { keysym: 0x53, code: "KeyS", shift: true }],
    ["0", { keysym: 0x30, code: "Digit0", shift: false }],
    [">", { keysym: 0x3e, code: "Period", shift: true }],
    ["/", { keysym: 0x2f, code: "Slash", shift: false }],
    ["|", { keysym: 0x7c, code: "Backslash", shift: true }],
    ["\\", { keysym: 0x5c, code: "Backslash", shift: false }],
    ['"', { keysym: 0x22, code: "Quote", shift: true }],
    ["~", { keysym: 0x7e, code: "Backquote", shift: true }],
    [" ", { keysym: 0x20, code: "Space", shift: false }],
    ["\n", { keysym: 0xff0d, code: "Enter", shift: false }],
  ])("types %j", (char, press) => {
    expect(keyPressOf(char)).toEqual(press);
  });

  it("has no key for characters outside the US layout", () => {
    expect(keyPressOf("é")).toBeNull();
  });
});

describe("typeAsUsKeyboard", () => {
  function recorder() {
    const sent: string[] = [];
    const rfb = {
      sendKey(keysym: number, code: string | null, down?: boolean) {
        sent.push(`${down === undefined ? "press" : down ? "down" : "up"} ${keysym.toString(16)} ${code}`);
      },
    };
    typeAsUsKeyboard(rfb);
    return { rfb, sent };
  }

  it("adds Shift to a '>' that arrives without it", () => {
    const { rfb, sent } = recorder();
    rfb.sendKey(0x3e, "Period", true);
    rfb.sendKey(0x3e, "Period", false);
    expect(sent).toEqual(["down ffe1 ShiftLeft", "down 3e Period", "up ffe1 ShiftLeft", "up 3e Period"]);
  });

  it("passes a '>' typed with Shift held through unchanged", () => {
    const { rfb, sent } = recorder();
    rfb.sendKey(0xffe1, "ShiftLeft", true);
    rfb.sendKey(0x3e, "Period", true);
    expect(sent).toEqual(["down ffe1 ShiftLeft", "down 3e Period"]);
  });

  it("sends the US key for a character typed on another layout", () => {
    const { rfb, sent } = recorder();
    rfb.sendKey(0xffe2, "ShiftRight", true);
    rfb.sendKey(0x3e, "IntlBackslash", true);
    expect(sent).toEqual(["down ffe2 ShiftRight", "down 3e Period"]);
  });

  it("lifts Shift for a lower-case letter while Shift is held, then presses it again", () => {
    const { rfb, sent } = recorder();
    rfb.sendKey(0xffe1, "ShiftLeft", true);
    rfb.sendKey(0x61, "KeyA", true);
    expect(sent).toEqual(["down ffe1 ShiftLeft", "up ffe1 ShiftLeft", "down 61 KeyA", "down ffe1 ShiftLeft"]);
  });

  it("splits a press into down and up, and leaves keys that are not characters alone", () => {
    const { rfb, sent } = recorder();
    rfb.sendKey(0x53, null);
    rfb.sendKey(0xff0d, "Enter");
    expect(sent).toEqual(["down ffe1 ShiftLeft", "down 53 KeyS", "up ffe1 ShiftLeft", "up 53 KeyS", "down ff0d Enter", "up ff0d Enter"]);
  });
});
