import { describe, expect, it } from "vitest";
import { z } from "zod";
import { vmView } from "./routers/vm.ts";
import { mappedOutput } from "./trpc.ts";

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
