import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { handleAuthRequest, signInAttemptsPerMinute } from "./sign-in-limit.ts";
import { TestPortal } from "./test-portal.ts";

const portal = new TestPortal();
beforeAll(() => portal.start());
afterAll(() => portal.stop());

const signIn = (email: string, password: string) =>
  handleAuthRequest(
    new Request("http://portal.test/api/auth/sign-in/email", {
      method: "POST",
      headers: { "content-type": "application/json", origin: "http://portal.test" },
      body: JSON.stringify({ email, password }),
    }),
    portal.services,
  );

describe("email sign-in attempts", () => {
  it("are limited per account: a guessed account is refused with 429 and Retry-After, others still sign in", async () => {
    const guessed = "someone-guessed@ferry.test";
    for (let attempt = 0; attempt < signInAttemptsPerMinute; attempt++) expect((await signIn(guessed, `wrong-password-${attempt}`)).status).toBe(401);
    const refused = await signIn(guessed, "wrong-password-again");
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(((await refused.json()) as { message: string }).message).toMatch(/^Too many sign-in attempts for someone-guessed@ferry\.test: 10 a minute are allowed\. Try again in \d+ s\.$/);
    // The same letters in another case are the same account.
    expect((await signIn("Someone-Guessed@ferry.test", "wrong")).status).toBe(429);

    // A classroom signing in at once from one address is not held back by that account's count.
    for (let attempt = 0; attempt < 5; attempt++) expect((await signIn("admin@ferry.test", "admin-password-1")).status).toBe(200);
  });
});
