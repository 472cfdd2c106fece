// Taking access away reaches open consoles too: the console gateway listens on this channel
// and closes the sessions of the revoked token or member (it also re-checks them periodically,
// so a lost message delays the close by seconds, never forever), and every portal process
// forgets the API tokens it remembered (token-viewers.ts).
import { type AccessRevokedMessage, redisKeys } from "@ferry/jobs";
import type { PortalServices } from "./services.ts";

export async function revokeAccess(services: Pick<PortalServices, "redis" | "settings" | "log" | "tokenViewers">, message: AccessRevokedMessage): Promise<void> {
  services.tokenViewers.forget(message);
  try {
    await services.redis.publish(redisKeys.accessRevoked(services.settings.queuePrefix), JSON.stringify(message));
  } catch (error) {
    services.log.warn({ err: error, message }, "could not announce the revocation; console gateways will see it at their next periodic check");
  }
}
