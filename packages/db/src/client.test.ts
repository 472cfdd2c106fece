import { describe, expect, it } from "vitest";

import { isDatabaseBusy } from "./client.ts";
import { Prisma } from "./generated/client.ts";

const known = (code: string) => new Prisma.PrismaClientKnownRequestError("Transaction API error: Unable to start a transaction in the given time.", { code, clientVersion: "7" });

describe("isDatabaseBusy", () => {
  it("is true only for a transaction that could not start in time (P2028)", () => {
    expect(isDatabaseBusy(known("P2028"))).toBe(true);
    expect(isDatabaseBusy(known("P2002"))).toBe(false);
    expect(isDatabaseBusy(new Error("P2028"))).toBe(false);
    expect(isDatabaseBusy(undefined)).toBe(false);
  });
});
