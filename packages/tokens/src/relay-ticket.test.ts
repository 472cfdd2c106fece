import { describe, expect, it } from "vitest";
import { signConsoleToken, signRelayTicket, TokenError, verifyRelayTicket } from "./index.ts";

const secret = "s".repeat(32);
const now = new Date("2030-01-01T00:00:00Z");

function refusal(ticket: string, options: { secret: string; workerId: string; now?: Date }): TokenError {
  try {
    verifyRelayTicket(ticket, options);
  } catch (error) {
    if (error instanceof TokenError) return error;
    throw error;
  }
  throw new Error(`ticket ${ticket} was accepted`);
}

describe("relay ticket", () => {
  it("names the vm for the worker it was signed for", () => {
    const ticket = signRelayTicket({ vmId: "vm-1", workerId: "w1", secret, now });
    expect(verifyRelayTicket(ticket, { secret, workerId: "w1", now })).toEqual({ vmId: "vm-1" });
  });

  it("is refused by another worker", () => {
    const ticket = signRelayTicket({ vmId: "vm-1", workerId: "w1", secret, now });
    const error = refusal(ticket, { secret, workerId: "w2", now });
    expect(error.code).toBe("wrong_worker");
    expect(error.message).toContain("worker w1");
  });

  it("expires after 30 seconds by default", () => {
    const ticket = signRelayTicket({ vmId: "vm-1", workerId: "w1", secret, now });
    expect(verifyRelayTicket(ticket, { secret, workerId: "w1", now: new Date(now.getTime() + 29_000) }).vmId).toBe("vm-1");
    expect(refusal(ticket, { secret, workerId: "w1", now: new Date(now.getTime() + 30_000) }).code).toBe("expired");
  });

  it("refuses a ticket retargeted to another worker", () => {
    const ticket = signRelayTicket({ vmId: "vm-1", workerId: "w1", secret, now });
    const [encoded, signature] = ticket.split(".");
    const payload = JSON.parse(Buffer.from(encoded!, "base64url").toString()) as Record<string, unknown>;
    payload.wkr = "w2";
    const tampered = `${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${signature}`;
    expect(refusal(tampered, { secret, workerId: "w2", now }).code).toBe("bad_signature");
  });

  it("refuses a console token presented as a ticket", () => {
    const { token } = signConsoleToken({ vmId: "vm-1", userId: "w1", secret, now });
    expect(refusal(token, { secret, workerId: "w1", now }).code).toBe("bad_signature");
  });

  it("refuses a ticket signed with another secret", () => {
    const ticket = signRelayTicket({ vmId: "vm-1", workerId: "w1", secret: "x".repeat(40), now });
    expect(refusal(ticket, { secret, workerId: "w1", now }).code).toBe("bad_signature");
  });

  it("refuses garbage", () => {
    expect(refusal("GET / HTTP/1.1", { secret, workerId: "w1", now }).code).toBe("malformed");
  });
});
