// bench/api: how fast the REST API lists and reads vms when the database holds many. Starts a
// whole Ferry, makes a tenant (a person, an organization, a project, an API token of that
// project with the vms:read scope: what a program gets), inserts BENCH_VMS vms (10,000) into
// the project straight into the database, lists every page once (the portal keeps the views of
// vms it has listed), then for BENCH_SECONDS (20) each:
//   list:  BENCH_CLIENTS (50) clients in a closed loop on GET /api/v1/vms?limit=50, walking the
//          cursors to the end and starting again (each sends its next request when the last
//          is answered: the server's saturation throughput, and the latency that queueing gives)
//   get:   the same on GET /api/v1/vms/{id} of random vms
//   paced: the same 50 clients each sending a list request every BENCH_PACE_MS (1000), so the
//          latency of a load the server can carry
// and prints one JSON document: p50/p99 latency (ms), requests per second and CPU time per
// request of each process (portal, PostgreSQL, Redis, the idle rest of Ferry, the clients).
// Target: p99 under 50 ms for a page of 50 vms.
//
// The clients are autocannon's: one keep-alive connection each, one request in flight on it
// (no pipelining), on a lean HTTP client of its own. Node's fetch cost about 1 ms of CPU per
// list request on the two cores the portal and PostgreSQL run on too; autocannon about a
// third of that. Latencies are timed by autocannon from writing the request to the end of the
// answer, read from its response events (not its histogram, which keeps whole milliseconds).
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import autocannon from "autocannon";
import { createDb } from "@ferry/db";
import { cpuUsedBetween, type FerryCluster, round, startFerryCluster } from "../lib/ferry-cluster.ts";

const vmCount = Number(process.env.BENCH_VMS ?? 10_000);
const clients = Number(process.env.BENCH_CLIENTS ?? 50);
const seconds = Number(process.env.BENCH_SECONDS ?? 20);
// autocannon paces a connection in requests per second.
const pacedPerSecond = Math.max(1, Math.round(1000 / Number(process.env.BENCH_PACE_MS ?? 1000)));
const paceMs = 1000 / pacedPerSecond;
const pageSize = 50;
const p99TargetMs = 50;
const autocannonVersion = (createRequire(import.meta.url)("autocannon/package.json") as { version: string }).version;

const log = (line: string) => process.stderr.write(`bench/api: ${line}\n`);

// States the reconcile loop leaves alone (nothing to place, start or stop), so the benchmark
// measures the API and not QEMU; deleted vms are in the table but not in the list.
const stateMix: { state: string; desiredState: string; share: number }[] = [
  { state: "stopped", desiredState: "stopped", share: 0.6 },
  { state: "suspended", desiredState: "suspended", share: 0.3 },
  { state: "deleted", desiredState: "deleted", share: 0.1 },
];

function stateOf(i: number): { state: string; desiredState: string } {
  const position = (i % 100) / 100;
  let sum = 0;
  for (const mix of stateMix) {
    sum += mix.share;
    if (position < sum) return { state: mix.state, desiredState: mix.desiredState };
  }
  return { state: "stopped", desiredState: "stopped" };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** How many vms a list page's JSON text holds: each vm object starts with its id. */
function vmsOnPage(body: string): number {
  let count = 0;
  for (let at = body.indexOf('{"id":'); at !== -1; at = body.indexOf('{"id":', at + 6)) count += 1;
  return count;
}

interface Phase {
  requests: number;
  errors: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** requests in flight on average, by Little's law (throughput x mean latency): the clients' count when every one of them always waits on an answer */
  meanInFlight: number;
  /** CPU time (ms) per request of each of the cluster's processes (postgres: every backend, the controller's and workers' too) and of this benchmark's clients, all on the same cores */
  cpuMsPerRequest: Record<string, number>;
}

/** One client's requests: the path of its next request, and what it learns from each answer. */
interface ClientScript {
  path(): string;
  answered?(status: number, body: string): void;
}

/**
 * `clients` autocannon connections, each running its own `script` (built per connection) for
 * `durationSeconds`: one request in flight per connection, the next sent when the last is
 * answered, or at most `perSecond` a second. Paced connections start spread over one second,
 * so their requests do not arrive together.
 */
async function phase(cluster: FerryCluster, headers: Record<string, string>, script: () => ClientScript, { perSecond = 0, durationSeconds = seconds } = {}): Promise<Phase> {
  const latencies: number[] = [];
  let errors = 0;
  const run = (connections: number, delayMs: number) =>
    new Promise<void>((resolve, reject) => {
      setTimeout(() => {
        const instance = autocannon(
          {
            url: cluster.baseUrl,
            connections,
            pipelining: 1,
            duration: durationSeconds,
            headers,
            ...(perSecond > 0 ? { connectionRate: perSecond } : {}),
            setupClient: (client) => {
              const own = script();
              client.setRequests([
                {
                  method: "GET",
                  setupRequest: (request) => ({ ...request, path: own.path() }),
                  ...(own.answered ? { onResponse: (status: number, body: string) => own.answered!(status, body) } : {}),
                },
              ]);
            },
          },
          (error, result) => {
            if (error) reject(error instanceof Error ? error : new Error(String(error)));
            else {
              errors += result.non2xx + result.errors + result.timeouts;
              resolve();
            }
          },
        );
        instance.on("response", (_client, _status, _bytes, responseTime) => latencies.push(responseTime));
      }, delayMs);
    });
  const clusterCpu = cluster.cpuSnapshot();
  const clientCpu = process.cpuUsage();
  const started = performance.now();
  await (perSecond > 0 ? Promise.all(Array.from({ length: clients }, (_, client) => run(1, (1000 * client) / clients))) : run(clients, 0));
  const elapsed = (performance.now() - started) / 1000;
  const clusterUsed = cpuUsedBetween(clusterCpu, cluster.cpuSnapshot());
  const clientUsed = process.cpuUsage(clientCpu);
  const perRequest = (ms: number) => round(ms / latencies.length, 3);
  const cpuMsPerRequest: Record<string, number> = {};
  for (const role of Object.keys(clusterUsed) as (keyof typeof clusterUsed)[]) cpuMsPerRequest[role] = perRequest(clusterUsed[role]);
  cpuMsPerRequest.client = perRequest((clientUsed.user + clientUsed.system) / 1000);
  const meanMs = latencies.reduce((sum, value) => sum + value, 0) / latencies.length;
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    errors,
    requestsPerSecond: round(latencies.length / elapsed),
    p50Ms: round(percentile(latencies, 50)),
    p99Ms: round(percentile(latencies, 99)),
    maxMs: round(latencies.at(-1) ?? Number.NaN),
    meanInFlight: round((latencies.length / elapsed) * (meanMs / 1000)),
    cpuMsPerRequest,
  };
}

const cluster = await startFerryCluster();
try {
  const db = createDb(cluster.databaseUrl);
  // A tenant, made as the portal makes them; its token is stored as the portal stores one.
  const person = await cluster.api<{ id: string; email: string }>("POST", "/users", { email: "tenant@bench.test", name: "Tenant", password: randomUUID() });
  const organization = await cluster.api<{ id: string }>("POST", "/organizations", { name: "bench-org", ownerEmail: "tenant@bench.test" });
  const project = (await cluster.api<{ id: string }>("POST", `/organizations/${organization.body.id}/projects`, { name: "bench" })).body;
  for (const [what, answer] of [["person", person], ["organization", organization]] as const) {
    if (answer.status !== 201 && answer.status !== 200) throw new Error(`could not create the bench tenant's ${what}: ${answer.status} ${JSON.stringify(answer.body)}`);
  }
  const tenantToken = `ferry_${randomBytes(32).toString("base64url")}`;
  await db.apiToken.create({
    data: { userId: person.body.id, projectId: project.id, name: "bench", scopes: ["vms:read"], tokenHash: createHash("sha256").update(tenantToken).digest("hex") },
  });
  log(`inserting ${vmCount} vms`);
  const base = Date.now() - vmCount * 1000;
  for (let from = 0; from < vmCount; from += 1000) {
    await db.vm.createMany({
      data: Array.from({ length: Math.min(1000, vmCount - from) }, (_, k) => {
        const i = from + k;
        const at = new Date(base + i * 1000);
        return { name: `bench-${i}`, ownerId: person.body.id, projectId: project.id, image: "tiny", vcpus: 1, memoryMiB: 256, profile: "standard", cpuModel: "qemu64", ...stateOf(i), createdAt: at, stateChangedAt: at };
      }),
    });
  }
  // Statistics, as autovacuum would gather within a minute of such an insert: without them the
  // planner expects a handful of rows in the project and reads all 10,000 for every page
  // (about 13 ms of PostgreSQL per list request) instead of walking the index to the 51st.
  await db.$executeRaw`ANALYZE vm`;
  const ids = (await db.vm.findMany({ where: { state: { not: "deleted" } }, select: { id: true } })).map((vm) => vm.id);
  await db.$disconnect();

  const headers = { authorization: `Bearer ${tenantToken}` };
  /** A client walking the list's pages to the end, then from the start again; counts the full pages it gets in `pages`. */
  const walker = (pages: { full: number }) => (): ClientScript => {
    let cursor: string | null = null;
    return {
      path: () => `/api/v1/vms?limit=${pageSize}${cursor ? `&cursor=${cursor}` : ""}`,
      // The cursor and the page's size are read off the text: JSON.parse of a 25 kB page cost
      // the client about 57 us of the CPU the portal and PostgreSQL share, this about 1 us.
      answered: (status, body) => {
        cursor = status === 200 ? (/"nextCursor":(?:null|"([^"]*)")\}$/.exec(body.slice(-100))?.[1] ?? null) : null;
        if (status === 200 && vmsOnPage(body) === pageSize) pages.full += 1;
      },
    };
  };
  // The portal keeps the views of the vms it has listed, by row version, and reads only ids
  // and versions for a page whose vms it has seen (apps/portal/src/server/vm-views.ts): one
  // walk over every page first, so the phases measure a portal that has listed this fleet
  // before, as a running one has. How long that first walk took is in the output.
  log("listing every page once");
  const firstWalk = { pages: 0, started: performance.now() };
  for (let cursor: string | null = null, first = true; first || cursor !== null; first = false) {
    const answer = await fetch(`${cluster.baseUrl}/api/v1/vms?limit=${pageSize}${cursor ? `&cursor=${cursor}` : ""}`, { headers });
    if (answer.status !== 200) throw new Error(`listing the vms failed: ${answer.status} ${await answer.text()}`);
    cursor = ((await answer.json()) as { nextCursor: string | null }).nextCursor;
    firstWalk.pages += 1;
  }
  const firstWalkMs = performance.now() - firstWalk.started;
  log("warming up");
  await phase(cluster, headers, walker({ full: 0 }), { durationSeconds: 2 });

  log(`list: ${clients} clients for ${seconds} s`);
  const listPages = { full: 0 };
  const list = await phase(cluster, headers, walker(listPages));

  log(`get: ${clients} clients for ${seconds} s`);
  let seed = 42;
  const nextId = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return ids[seed % ids.length]!;
  };
  const one = await phase(cluster, headers, () => ({ path: () => `/api/v1/vms/${nextId()}` }));

  log(`paced list: ${clients} clients, one request each every ${paceMs} ms, for ${seconds} s`);
  const paced = await phase(cluster, headers, walker({ full: 0 }), { perSecond: pacedPerSecond });

  const result = {
    vms: vmCount,
    listedVms: ids.length,
    clients,
    client: {
      name: `autocannon ${autocannonVersion}`,
      connections: clients,
      pipelining: 1,
      note: "one keep-alive connection per client with one request in flight; meanInFlight (Little's law) near the client count shows the closed loops kept every client waiting on the server",
    },
    secondsPerPhase: seconds,
    firstWalk: { pages: firstWalk.pages, msPerPage: round(firstWalkMs / firstWalk.pages, 2), note: "one client listing every page once before the phases, the views of their vms not yet kept by the portal" },
    list: { ...list, pageSize, fullPages: listPages.full },
    get: one,
    pacedList: { ...paced, everyMs: paceMs },
    target: { listP99Ms: p99TargetMs, metClosedLoop: list.p99Ms < p99TargetMs, metPaced: paced.p99Ms < p99TargetMs },
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} finally {
  await cluster.stop();
}
