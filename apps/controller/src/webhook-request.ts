// One webhook POST: a deadline, no redirects, and (unless the operator allows it) never to a
// private, loopback or link-local address, so a tenant's URL cannot reach the cluster's own
// services. The address is checked inside the connection's own DNS lookup: a name cannot
// resolve to a public address for the check and to a private one for the connection.
import { type LookupAddress, type LookupOptions, lookup } from "node:dns";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { BlockList, type LookupFunction, isIP } from "node:net";

const privateRanges = new BlockList();
for (const [network, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const) {
  privateRanges.addSubnet(network, prefix, "ipv4");
}
// IPv4-mapped IPv6 addresses (::ffff:10.0.0.1) are matched by the IPv4 ranges above.
for (const [network, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["64:ff9b::", 96],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
] as const) {
  privateRanges.addSubnet(network, prefix, "ipv6");
}

/** True for loopback, private, link-local, shared, multicast and reserved addresses. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  return family !== 0 && privateRanges.check(address, family === 6 ? "ipv6" : "ipv4");
}

class PrivateAddressRefused extends Error {
  constructor(host: string, address: string) {
    super(
      `${host === address ? address : `${host} resolves to ${address}, which`} is a private, loopback or link-local address; webhooks are not sent there (the operator may set FERRY_WEBHOOK_PRIVATE_ADDRESSES=allow)`,
    );
  }
}

const publicOnlyLookup = ((hostname: string, options: LookupOptions, callback: (error: Error | null, address?: string | LookupAddress[], family?: number) => void) => {
  lookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error);
    const refused = addresses.find((entry) => isPrivateAddress(entry.address));
    if (refused) return callback(new PrivateAddressRefused(hostname, refused.address));
    const [first] = addresses;
    if (options.all) return callback(null, addresses);
    if (!first) return callback(new Error(`${hostname} has no address`));
    return callback(null, first.address, first.family);
  });
}) as unknown as LookupFunction;

export interface WebhookAnswer {
  /** the receiver's HTTP status; null when it did not answer */
  status: number | null;
  /** null for a 2xx answer, else what went wrong, for the delivery's record */
  error: string | null;
}

/** POST `body` to `target` once. */
export function postWebhook(
  target: string,
  body: string,
  headers: Record<string, string>,
  options: { timeoutMs: number; allowPrivateAddresses: boolean },
): Promise<WebhookAnswer> {
  const url = new URL(target);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  // A literal address is connected to without a lookup: check it here.
  if (!options.allowPrivateAddresses && isPrivateAddress(host)) return Promise.resolve({ status: null, error: new PrivateAddressRefused(host, host).message });
  return new Promise((resolve) => {
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    const request = send(
      url,
      {
        method: "POST",
        headers: { ...headers, "content-length": String(Buffer.byteLength(body)) },
        signal: AbortSignal.timeout(options.timeoutMs),
        ...(options.allowPrivateAddresses ? {} : { lookup: publicOnlyLookup }),
      },
      (response) => {
        const status = response.statusCode ?? 0;
        // Only the status matters; the body is not read (nor waited for).
        response.on("error", () => undefined);
        response.destroy();
        if (status >= 200 && status < 300) return resolve({ status, error: null });
        if (status >= 300 && status < 400) {
          // Redirects are not followed: a receiver that moved must be subscribed again at its new URL.
          return resolve({ status, error: `the receiver answered ${status}, a redirect to ${response.headers.location ?? "(no location)"}; redirects are not followed: subscribe the final URL` });
        }
        return resolve({ status, error: `the receiver answered ${status}` });
      },
    );
    request.on("error", (error) => {
      if (error instanceof PrivateAddressRefused) return resolve({ status: null, error: error.message });
      if (error.name === "AbortError") return resolve({ status: null, error: `no answer within ${options.timeoutMs} ms` });
      return resolve({ status: null, error: `could not reach the receiver (${error.message})` });
    });
    request.end(body);
  });
}
