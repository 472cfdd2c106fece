// postWebhook against a real HTTP server on this machine: what counts as delivered, and where
// nothing is sent (private addresses, by address or by name; redirects).
import { type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { isPrivateAddress, postWebhook } from "./webhook-request.ts";

let server: Server;
let port: number;
const paths: string[] = [];

beforeAll(async () => {
  server = createServer((request, response) => {
    paths.push(request.url ?? "");
    request.resume();
    request.on("end", () => {
      if (request.url === "/moved") return void response.writeHead(301, { location: "/elsewhere" }).end();
      if (request.url === "/slow") return;
      response.writeHead(request.url === "/broken" ? 500 : 204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const allow = { timeoutMs: 500, allowPrivateAddresses: true };
const refuse = { timeoutMs: 500, allowPrivateAddresses: false };
const post = (url: string, options = allow) => postWebhook(url, "{}", { "content-type": "application/json" }, options);

describe("isPrivateAddress", () => {
  it.each([
    ["127.0.0.1", true],
    ["10.1.2.3", true],
    ["172.20.0.1", true],
    ["192.168.1.1", true],
    ["169.254.169.254", true],
    ["100.64.0.1", true],
    ["0.0.0.0", true],
    ["::1", true],
    ["fd00::1", true],
    ["fe80::1", true],
    ["::ffff:10.0.0.1", true],
    ["8.8.8.8", false],
    ["172.32.0.1", false],
    ["2606:4700::1111", false],
    ["example.com", false],
  ])("%s → %s", (address, expected) => {
    expect(isPrivateAddress(address)).toBe(expected);
  });
});

describe("postWebhook", () => {
  it("a 2xx is delivered; another status is an error naming it", async () => {
    expect(await post(`http://127.0.0.1:${port}/ok`)).toEqual({ status: 204, error: null });
    expect(await post(`http://127.0.0.1:${port}/broken`)).toEqual({ status: 500, error: "the receiver answered 500" });
  });

  it("does not follow a redirect", async () => {
    const answer = await post(`http://127.0.0.1:${port}/moved`);
    expect(answer).toEqual({ status: 301, error: expect.stringContaining("a redirect to /elsewhere; redirects are not followed") });
    expect(paths).not.toContain("/elsewhere");
  });

  it("gives up on a receiver that does not answer in time", async () => {
    expect(await post(`http://127.0.0.1:${port}/slow`)).toEqual({ status: null, error: "no answer within 500 ms" });
  });

  it("refuses a private address, given as an address or as a name that resolves to one, and sends nothing", async () => {
    for (const host of ["127.0.0.1", "localhost", "[::1]"]) {
      const answer = await post(`http://${host}:${port}/private-${host}`, refuse);
      expect(answer.status, host).toBeNull();
      expect(answer.error, host).toContain("is a private, loopback or link-local address; webhooks are not sent there");
      expect(paths).not.toContain(`/private-${host}`);
    }
  });

  it("says why a receiver could not be reached", async () => {
    const answer = await post("http://127.0.0.1:1/closed");
    expect(answer).toEqual({ status: null, error: expect.stringContaining("could not reach the receiver (connect ECONNREFUSED 127.0.0.1:1)") });
  });
});
