import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { newWebhookSalt, webhookSignature, webhookSigningSecret } from "./index.ts";

const clusterSecret = "c".repeat(32);

describe("webhook signing secret", () => {
  it("is the same for the same webhook and salt, and differs with either or with the cluster secret", () => {
    const secret = webhookSigningSecret(clusterSecret, "wh-1", "salt-a");
    expect(secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(webhookSigningSecret(clusterSecret, "wh-1", "salt-a")).toBe(secret);
    expect(webhookSigningSecret(clusterSecret, "wh-2", "salt-a")).not.toBe(secret);
    expect(webhookSigningSecret(clusterSecret, "wh-1", "salt-b")).not.toBe(secret);
    expect(webhookSigningSecret("d".repeat(32), "wh-1", "salt-a")).not.toBe(secret);
  });

  it("needs a cluster secret of at least 32 characters", () => {
    expect(() => webhookSigningSecret("short", "wh-1", "salt")).toThrow(/FERRY_CLUSTER_SECRET/);
  });

  it("salts are random", () => {
    expect(newWebhookSalt()).toMatch(/^[0-9a-f]{32}$/);
    expect(newWebhookSalt()).not.toBe(newWebhookSalt());
  });
});

describe("webhook signature", () => {
  it("is t=<timestamp>,v1=<hex HMAC-SHA256 of '<t>.<body>'>, as a receiver recomputes it", () => {
    const body = '{"kind":"vm.running"}';
    const header = webhookSignature("whsec_x", 1_900_000_000, body);
    const expected = createHmac("sha256", "whsec_x").update(`1900000000.${body}`).digest("hex");
    expect(header).toBe(`t=1900000000,v1=${expected}`);
    expect(webhookSignature("whsec_x", 1_900_000_001, body)).not.toBe(header);
    expect(webhookSignature("whsec_x", 1_900_000_000, `${body} `)).not.toBe(header);
  });
});
