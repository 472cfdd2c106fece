// The guest reads keys with a US keymap, and QEMU 7.2 types what the key code says: a plain
// keysym '>' arrives without Shift (measured: "reboot -f" typed as plain keysyms works,
// "echo x > /dev/ttyS0" does not), and so does Playwright's keyboard.type('>'), which sends
// code "Period" without pressing Shift. A browser on another layout sends that layout's codes.
// So each printable character goes out as the US key that types it, with Shift exactly when
// the US layout needs it.
const shiftedSymbols = '~!@#$%^&*()_+{}|:"<>?';
const unshiftedSymbols = "`1234567890-=[]\\;',./";
const symbolCodes = ["Backquote", "Digit1", "Digit2", "Digit3", "Digit4", "Digit5", "Digit6", "Digit7", "Digit8", "Digit9", "Digit0", "Minus", "Equal", "BracketLeft", "BracketRight", "Backslash", "Semicolon", "Quote", "Comma", "Period", "Slash"];
const namedKeys: Record<string, { keysym: number; code: string }> = {
  "\n": { keysym: 0xff0d, code: "Enter" },
  "\t": { keysym: 0xff09, code: "Tab" },
  " ": { keysym: 0x20, code: "Space" },
};
const shiftKeysyms: Record<string, number> = { ShiftLeft: 0xffe1, ShiftRight: 0xffe2 };

/** The key presses that type `char` on a US keyboard; null when no US key types it. */
export function keyPressOf(char: string): { keysym: number; code: string; shift: boolean } | null {
  const named = namedKeys[char];
  if (named) return { ...named, shift: false };
  const keysym = char.codePointAt(0) ?? 0;
  if (/^[a-z]$/.test(char)) return { keysym, code: `Key${char.toUpperCase()}`, shift: false };
  if (/^[A-Z]$/.test(char)) return { keysym, code: `Key${char}`, shift: true };
  const unshifted = unshiftedSymbols.indexOf(char);
  if (unshifted >= 0) return { keysym, code: symbolCodes[unshifted] ?? "", shift: false };
  const shifted = shiftedSymbols.indexOf(char);
  if (shifted >= 0) return { keysym, code: symbolCodes[shifted] ?? "", shift: true };
  return null;
}

interface KeySender {
  sendKey(keysym: number, code: string | null, down?: boolean): void;
}

/**
 * Make `rfb.sendKey` (used by noVNC's own keyboard handler and by paste) send each printable
 * ASCII character as the US key that types it, adding or lifting Shift around it as needed.
 */
export function typeAsUsKeyboard(rfb: KeySender): void {
  const send = rfb.sendKey.bind(rfb);
  const shiftsHeld = new Set<string>();
  rfb.sendKey = function sendUsKey(keysym: number, code: string | null, down?: boolean): void {
    if (down === undefined) {
      sendUsKey(keysym, code, true);
      sendUsKey(keysym, code, false);
      return;
    }
    if (code !== null && code in shiftKeysyms) {
      if (down) shiftsHeld.add(code);
      else shiftsHeld.delete(code);
      send(keysym, code, down);
      return;
    }
    const press = keysym >= 0x20 && keysym < 0x7f ? keyPressOf(String.fromCharCode(keysym)) : null;
    if (press === null) {
      send(keysym, code, down);
      return;
    }
    if (!down || press.shift === shiftsHeld.size > 0) {
      send(keysym, press.code, down);
      return;
    }
    const toggled = press.shift ? ["ShiftLeft"] : [...shiftsHeld];
    for (const shift of toggled) send(shiftKeysyms[shift] ?? 0xffe1, shift, press.shift);
    send(keysym, press.code, true);
    for (const shift of toggled) send(shiftKeysyms[shift] ?? 0xffe1, shift, !press.shift);
  };
}
