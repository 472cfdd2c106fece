import { describe, expect, it } from "vitest";
import { parseEnv } from "./env.ts";

const valid = {
  FERRY_DATABASE_URL: "postgresql://postgres@127.0.0.1:5440/ferry",
  FERRY_REDIS_URL: "redis://127.0.0.1:6390",
  FERRY_CLUSTER_SECRET: "c".repeat(32),
};

describe("console gateway env", () => {
  it("applies the documented defaults", () => {
    expect(parseEnv(valid)).toMatchObject({
      prefix: "ferry",
      logLevel: "info",
      host: "127.0.0.1",
      port: 3001,
      allowedOrigins: ["http://localhost:3000"],
    });
  });

  it("defaults the allowed origin to the portal's public URL", () => {
    expect(parseEnv({ ...valid, FERRY_PUBLIC_URL: "https://ferry.example.com/app" }).allowedOrigins).toEqual([
      "https://ferry.example.com",
    ]);
  });

  it("reads a comma list of origins", () => {
    expect(
      parseEnv({ ...valid, FERRY_ALLOWED_ORIGINS: "https://a.example.com, http://localhost:3000/" }).allowedOrigins,
    ).toEqual(["https://a.example.com", "http://localhost:3000"]);
  });

  it("names every bad variable in one error", () => {
    let message = "";
    try {
      parseEnv({
        FERRY_DATABASE_URL: "mysql://x",
        FERRY_CLUSTER_SECRET: "short",
        FERRY_CONSOLE_PORT: "70000",
        FERRY_ALLOWED_ORIGINS: "not an origin",
      });
    } catch (error) {
      message = (error as Error).message;
    }
    for (const name of ["FERRY_DATABASE_URL", "FERRY_REDIS_URL", "FERRY_CLUSTER_SECRET", "FERRY_CONSOLE_PORT", "FERRY_ALLOWED_ORIGINS"]) {
      expect(message).toContain(name);
    }
  });

  it("refuses an origin that is not a URL", () => {
    expect(() => parseEnv({ ...valid, FERRY_ALLOWED_ORIGINS: "ferry.example.com" })).toThrow(/FERRY_ALLOWED_ORIGINS/);
  });
});
