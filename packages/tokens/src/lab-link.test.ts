import { describe, expect, it } from "vitest";
import { signConsoleToken, signLabLink, verifyLabLink } from "./index.ts";

const secret = "lab-link-test-secret-0123456789abcdef";
const now = new Date("2030-01-01T00:00:00Z");

describe("lab links", () => {
  it("opens as the seat it was signed for, within its lifetime", () => {
    const { token, linkId, expiresAt } = signLabLink({ seatId: "seat-1", secret, ttlSeconds: 120, now });
    expect(verifyLabLink(token, { secret, now })).toEqual({ seatId: "seat-1", linkId, expiresAt });
    expect(expiresAt.toISOString()).toBe("2030-01-01T00:02:00.000Z");
  });

  it("is refused once expired, with another secret, and as a console token's signature", () => {
    const { token } = signLabLink({ seatId: "seat-1", secret, ttlSeconds: 60, now });
    expect(() => verifyLabLink(token, { secret, now: new Date("2030-01-01T00:01:00Z") })).toThrow("The lab link expired at 2030-01-01T00:01:00.000Z");
    expect(() => verifyLabLink(token, { secret: `${secret}-other` })).toThrow(/signature/);
    const console = signConsoleToken({ vmId: "vm-1", userId: "user-1", secret, now });
    expect(() => verifyLabLink(console.token, { secret, now })).toThrow(/signature/);
  });

  it("lives at most 5 minutes", () => {
    expect(() => signLabLink({ seatId: "seat-1", secret, ttlSeconds: 301 })).toThrow("A lab link lives 1 to 300 seconds; got ttlSeconds=301");
  });
});
