import { describe, expect, it } from "vitest";
import { parsePortalEnv } from "./env.ts";

const good = {
  FERRY_DATABASE_URL: "postgresql://postgres@127.0.0.1:5440/ferry_dev",
  FERRY_REDIS_URL: "redis://127.0.0.1:6390",
  FERRY_CLUSTER_SECRET: "0123456789abcdef0123456789abcdef",
};

describe("parsePortalEnv", () => {
  it("fills in the documented defaults", () => {
    expect(parsePortalEnv(good)).toMatchObject({
      FERRY_QUEUE_PREFIX: "ferry",
      FERRY_PORT: 3000,
      FERRY_PUBLIC_URL: "http://localhost:3000",
      FERRY_ADMIN_EMAIL: "admin@ferry.local",
      FERRY_CONSOLE_PUBLIC_URL: "ws://localhost:3001",
      FERRY_CPU_MODEL: "qemu64",
      FERRY_LOG_LEVEL: "info",
    });
    expect(parsePortalEnv({ ...good, FERRY_PORT: "3100" }).FERRY_PUBLIC_URL).toBe("http://localhost:3100");
  });

  it("names every bad variable in one error, hiding secrets", () => {
    let message = "";
    try {
      parsePortalEnv({ FERRY_REDIS_URL: "http://nope", FERRY_CLUSTER_SECRET: "short", FERRY_PORT: "99999" });
    } catch (error) {
      message = (error as Error).message;
    }
    for (const name of ["FERRY_DATABASE_URL", "FERRY_REDIS_URL", "FERRY_CLUSTER_SECRET", "FERRY_PORT"]) expect(message).toContain(name);
    expect(message).toContain('"http://nope"');
    expect(message).not.toContain("short");
  });
});
