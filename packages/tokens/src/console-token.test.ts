import { describe, expect, it } from "vitest";
import { signConsoleToken, signRelayTicket, TokenError, verifyConsoleToken } from "./index.ts";

const secret = "s".repeat(32);
const otherSecret = "t".repeat(32);
const now = new Date("2030-01-01T00:00:00Z");

function refusal(token: string, options: { secret: string; now?: Date }): TokenError {
  try {
    verifyConsoleToken(token, options);
  } catch (error) {
    if (error instanceof TokenError) return error;
    throw error;
  }
  throw new Error(`token ${token} was accepted`);
}

function withPayload(token: string, edit: (payload: Record<string, unknown>) => void): string {
  const [encoded, signature] = token.split(".");
  const payload = JSON.parse(Buffer.from(encoded!, "base64url").toString()) as Record<string, unknown>;
  edit(payload);
  return `${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${signature}`;
}

describe("console token", () => {
  it("round-trips vm, user, token id and expiry", () => {
    const issued = signConsoleToken({ vmId: "vm-1", userId: "user-1", secret, now });
    expect(issued.expiresAt.toISOString()).toBe("2030-01-01T00:01:00.000Z");
    expect(verifyConsoleToken(issued.token, { secret, now: new Date(now.getTime() + 59_000) })).toEqual({
      vmId: "vm-1",
      userId: "user-1",
      tokenId: issued.tokenId,
      expiresAt: issued.expiresAt,
      mode: "control",
    });
  });

  it("carries a view-only mode, and reads a token without a mode as control", () => {
    const view = signConsoleToken({ vmId: "vm-1", userId: "user-1", mode: "view", secret, now });
    expect(verifyConsoleToken(view.token, { secret, now }).mode).toBe("view");
    const control = signConsoleToken({ vmId: "vm-1", userId: "user-1", mode: "control", secret, now });
    expect(verifyConsoleToken(control.token, { secret, now }).mode).toBe("control");
    // A token signed before modes existed has no mode field at all.
    const [encoded] = control.token.split(".");
    expect(JSON.parse(Buffer.from(encoded!, "base64url").toString())).not.toHaveProperty("mode");
  });

  it("refuses a view-only token tampered to give control", () => {
    const { token } = signConsoleToken({ vmId: "vm-1", userId: "user-1", mode: "view", secret, now });
    expect(refusal(withPayload(token, (p) => delete p.mode), { secret, now }).code).toBe("bad_signature");
  });

  it("gives every token its own id", () => {
    const a = signConsoleToken({ vmId: "vm-1", userId: "user-1", secret, now });
    const b = signConsoleToken({ vmId: "vm-1", userId: "user-1", secret, now });
    expect(a.tokenId).not.toBe(b.tokenId);
  });

  it("refuses a token at and after its expiry", () => {
    const { token } = signConsoleToken({ vmId: "vm-1", userId: "user-1", secret, ttlSeconds: 10, now });
    const error = refusal(token, { secret, now: new Date(now.getTime() + 10_000) });
    expect(error.code).toBe("expired");
    expect(error.message).toContain("2030-01-01T00:00:10.000Z");
  });

  it("refuses a ttl above 60 seconds", () => {
    expect(() => signConsoleToken({ vmId: "vm-1", userId: "u", secret, ttlSeconds: 61 })).toThrow(/1 to 60 seconds/);
  });

  it.each([
    ["another vm", (p: Record<string, unknown>) => (p.vm = "vm-2")],
    ["another user", (p: Record<string, unknown>) => (p.sub = "admin")],
    ["a later expiry", (p: Record<string, unknown>) => (p.exp = (p.exp as number) + 3600)],
  ])("refuses a payload tampered to name %s", (_name, edit) => {
    const { token } = signConsoleToken({ vmId: "vm-1", userId: "user-1", secret, now });
    expect(refusal(withPayload(token, edit), { secret, now }).code).toBe("bad_signature");
  });

  it("refuses a token signed with another secret", () => {
    const { token } = signConsoleToken({ vmId: "vm-1", userId: "user-1", secret: otherSecret, now });
    expect(refusal(token, { secret, now }).code).toBe("bad_signature");
  });

  it("refuses a forged signature of the right length", () => {
    const { token } = signConsoleToken({ vmId: "vm-1", userId: "user-1", secret, now });
    const forged = `${token.split(".")[0]}.${Buffer.alloc(32, 7).toString("base64url")}`;
    expect(refusal(forged, { secret, now }).code).toBe("bad_signature");
  });

  it("refuses a relay ticket presented as a console token", () => {
    const ticket = signRelayTicket({ vmId: "vm-1", workerId: "w1", secret });
    expect(refusal(ticket, { secret }).code).toBe("bad_signature");
  });

  it.each([
    ["empty", ""],
    ["one part", "abc"],
    ["three parts", "a.b.c"],
    ["non-base64url characters", "eyJ2IjoxfQ==.abc+/"],
    ["a short signature", "eyJ2IjoxfQ.AAAA"],
  ])("refuses a malformed token: %s", (_name, token) => {
    expect(refusal(token, { secret, now }).code).toBe("malformed");
  });

  it("refuses a secret shorter than 32 characters", () => {
    expect(() => signConsoleToken({ vmId: "vm-1", userId: "u", secret: "short" })).toThrow(/FERRY_CLUSTER_SECRET/);
  });
});
