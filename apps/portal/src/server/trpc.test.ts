import { Prisma } from "@ferry/db";
import { getHTTPStatusCodeFromError } from "@trpc/server/http";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import type { Viewer } from "./access.ts";
import { PortalError } from "./errors.ts";
import { vmView } from "./routers/vm.ts";
import { type AuthedRead, authedProcedure, createCallerFactory, createTRPCRouter, mappedOutput, type PortalContext, resolveAuthed, toApiError, toTRPCError } from "./trpc.ts";

const page = z.object({ items: z.array(vmView), nextCursor: z.string().nullable() });
const drifted = { items: [{ id: "vm-1" }], nextCursor: null };

describe("mappedOutput", () => {
  it("checks the output outside production (tests run here): the schema itself", async () => {
    expect(mappedOutput(page)).toBe(page);
    await expect(mappedOutput(page, false).parseAsync(drifted)).rejects.toThrow(/name/);
  });

  it("passes a trusted output through unparsed, with the same JSON Schema for the OpenAPI document", async () => {
    const trusted = mappedOutput(page, true);
    const answer = await trusted.parseAsync(drifted);
    expect(answer).toBe(drifted);
    expect(z.toJSONSchema(trusted)).toEqual(z.toJSONSchema(page));
  });
});

describe("resolveAuthed", () => {
  // One read, run as a procedure through tRPC's caller and by resolveAuthed: every answer and
  // every refusal (HTTP status and API error) must be the same.
  const read: AuthedRead<z.ZodType<{ what: string; limit: number }>, unknown> = {
    input: z.strictObject({ what: z.enum(["echo", "refuse", "busy", "crash"]), limit: z.number().int().min(1).default(5) }),
    async resolve(ctx, input) {
      if (input.what === "refuse") throw new PortalError("vm_not_found", "no vm with id \"x\" is visible to you", { id: "x" });
      if (input.what === "busy") throw new Prisma.PrismaClientKnownRequestError("Transaction API error: Unable to start a transaction in the given time.", { code: "P2028", clientVersion: "7" });
      if (input.what === "crash") throw new Error("a bug");
      return { viewer: ctx.viewer.id, input };
    },
  };
  const caller = createCallerFactory(createTRPCRouter({ read: authedProcedure.input(read.input).query(({ ctx, input }) => read.resolve(ctx, input)) }));
  const viewer: Viewer = { id: "u1", email: "u1@ferry.test", name: "u1", role: "member", token: null, sessionId: "s1" };
  const context = (who: Viewer | null, tokenRejected = false): PortalContext => ({ services: {} as PortalContext["services"], viewer: who, ip: null, tokenRejected });
  const outcome = (answer: Promise<unknown>) =>
    answer.then(
      (value) => ({ value }),
      (thrown: unknown) => {
        const error = toTRPCError(thrown);
        return { status: getHTTPStatusCodeFromError(error), error: toApiError(error) };
      },
    );

  it.each([
    ["a read", context(viewer), { what: "echo" }, 200, null],
    ["no viewer", context(null), { what: "echo" }, 401, "unauthenticated"],
    ["a rejected token, with bad input too", context(null, true), { what: "nothing" }, 401, "unauthenticated"],
    ["an unknown field", context(viewer), { what: "echo", colour: "red" }, 400, "unknown_field"],
    ["a wrong type", context(viewer), { what: "echo", limit: "many" }, 400, "invalid_input"],
    ["a number out of range", context(viewer), { what: "echo", limit: 0 }, 400, "invalid_input"],
    ["a refusal", context(viewer), { what: "refuse" }, 404, "vm_not_found"],
    ["a busy database", context(viewer), { what: "busy" }, 503, "unavailable"],
    ["a bug", context(viewer), { what: "crash" }, 500, "internal"],
  ])("answers %s as the procedure does", async (_case, ctx, input, status, code) => {
    const direct = await outcome(resolveAuthed(ctx, read, input));
    expect(direct).toEqual(await outcome(caller(ctx).read(input as never)));
    if (code === null) expect(direct).toEqual({ value: { viewer: "u1", input: { what: "echo", limit: 5 } } });
    else expect(direct).toMatchObject({ status, error: { code } });
  });
});
