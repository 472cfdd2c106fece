import { createHash } from "node:crypto";

/** The sha256 under which an API token is stored; the token itself is never kept. */
export function apiTokenHash(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}
