import { describe, expect, it } from "vitest";
import type { Viewer } from "./access.ts";
import { TokenViewers } from "./token-viewers.ts";

const at = (ms: number) => new Date(Date.UTC(2026, 0, 1) + ms);
const viewer = (userId: string, tokenId: string): Viewer => ({
  id: userId,
  email: `${userId}@ferry.test`,
  name: userId,
  role: "member",
  token: { id: tokenId, projectId: "p1", scopes: ["vms:read"] },
  sessionId: null,
});

function remembered(): TokenViewers {
  const cache = new TokenViewers(1000);
  cache.remember("hash-a1", viewer("alice", "a1"), null, cache.mark(), at(0));
  cache.remember("hash-a2", viewer("alice", "a2"), null, cache.mark(), at(0));
  cache.remember("hash-b1", viewer("bob", "b1"), at(500), cache.mark(), at(0));
  return cache;
}

describe("TokenViewers", () => {
  it("recalls a token for its lifetime, and never past the token's expiry", () => {
    const cache = remembered();
    expect(cache.recall("hash-a1", at(999))?.token?.id).toBe("a1");
    expect(cache.recall("hash-a1", at(1000))).toBeUndefined();
    expect(cache.recall("hash-b1", at(499))?.id).toBe("bob");
    expect(cache.recall("hash-b1", at(500))).toBeUndefined();
    expect(cache.recall("hash-unknown", at(0))).toBeUndefined();
  });

  it.each([
    ["a revoked token", { apiTokenId: "a1" }, ["hash-a2", "hash-b1"]],
    ["a person's access", { userId: "alice", organizationId: "o1" }, ["hash-b1"]],
    ["a signed-out person", { userId: "bob" }, ["hash-a1", "hash-a2"]],
    ["an announcement naming nobody", {}, []],
  ])("forgets %s at once", (_what, message, kept) => {
    const cache = remembered();
    cache.forget(message);
    expect(["hash-a1", "hash-a2", "hash-b1"].filter((hash) => cache.recall(hash, at(1)) !== undefined)).toEqual(kept);
  });

  it("does not remember a token read before a revocation that landed while it was read", () => {
    const cache = new TokenViewers(1000);
    const mark = cache.mark();
    cache.forget({ apiTokenId: "a1" });
    cache.remember("hash-a1", viewer("alice", "a1"), null, mark, at(0));
    expect(cache.recall("hash-a1", at(1))).toBeUndefined();
    cache.remember("hash-a1", viewer("alice", "a1"), null, cache.mark(), at(0));
    expect(cache.recall("hash-a1", at(1))).toBeDefined();
  });
});
