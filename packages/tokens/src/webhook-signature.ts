// Webhook signing. Each webhook's secret is derived, not stored: HMAC(cluster secret, webhook
// id + a random salt kept beside the webhook). The portal derives it once to show it, the
// controller derives it again for every delivery; a copy of the database alone cannot sign.
// A delivery carries `Ferry-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
// the scheme receivers know from Stripe: the timestamp inside the MAC stops replays of old bodies.
import { createHmac, randomBytes } from "node:crypto";

/** The HTTP header a delivery's signature travels in. */
export const webhookSignatureHeader = "Ferry-Signature";

const minSecretLength = 32;

/** A fresh salt for a new webhook (stored in the clear; useless without the cluster secret). */
export function newWebhookSalt(): string {
  return randomBytes(16).toString("hex");
}

/** The signing secret of webhook `webhookId` with `salt`, as shown to its creator (`whsec_…`). */
export function webhookSigningSecret(clusterSecret: string, webhookId: string, salt: string): string {
  if (clusterSecret.length < minSecretLength) {
    throw new RangeError(
      `The cluster secret is ${clusterSecret.length} characters long; it must have at least ${minSecretLength}. Set FERRY_CLUSTER_SECRET to a longer random value.`,
    );
  }
  const derived = createHmac("sha256", clusterSecret).update(`ferry.webhook-secret.v1.${webhookId}.${salt}`).digest("base64url");
  return `whsec_${derived}`;
}

/** The `Ferry-Signature` value for `body` sent at `timestamp` (unix seconds). */
export function webhookSignature(secret: string, timestamp: number, body: string): string {
  const mac = createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex");
  return `t=${timestamp},v1=${mac}`;
}
