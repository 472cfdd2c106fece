// bench/api: how fast the REST API lists and reads vms when the database holds many. Starts a
// whole Ferry, makes a tenant (a person, an organization, a project, an API token of that
// project with the vms:read scope: what a program gets), inserts BENCH_VMS vms (10,000) into
// the project straight into the database, then for BENCH_SECONDS (20) each:
//   list:  BENCH_CLIENTS (50) clients in a closed loop on GET /api/v1/vms?limit=50, walking the
//          cursors to the end and starting again (each sends its next request when the last
//          is answered: the server's saturation throughput, and the latency that queueing gives)
//   get:   the same on GET /api/v1/vms/{id} of random vms
//   paced: the same 50 clients each sending a list request every BENCH_PACE_MS (1000), so the
//          latency of a load the server can carry
// and prints one JSON document: p50/p99 latency (ms) and requests per second of each.
// Target: p99 under 50 ms for a page of 50 vms.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { createDb } from "@ferry/db";
import { round, startFerryCluster } from "../lib/ferry-cluster.ts";

const vmCount = Number(process.env.BENCH_VMS ?? 10_000);
const clients = Number(process.env.BENCH_CLIENTS ?? 50);
const seconds = Number(process.env.BENCH_SECONDS ?? 20);
const paceMs = Number(process.env.BENCH_PACE_MS ?? 1000);
const pageSize = 50;
const p99TargetMs = 50;

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

interface Phase {
  requests: number;
  errors: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Run `clients` loops of `step` for `seconds`; each step is one timed request, sent `everyMs` after the last one started (0: as soon as it is answered). */
async function phase(step: (client: number) => Promise<boolean>, everyMs = 0): Promise<Phase> {
  const latencies: number[] = [];
  let errors = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      // Paced clients start spread over one period, so their requests do not arrive together.
      if (everyMs > 0) await new Promise((resolve) => setTimeout(resolve, (everyMs * client) / clients));
      while (performance.now() < deadline) {
        const t0 = performance.now();
        const ok = await step(client);
        latencies.push(performance.now() - t0);
        if (!ok) errors += 1;
        const wait = everyMs - (performance.now() - t0);
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    errors,
    requestsPerSecond: round(latencies.length / elapsed),
    p50Ms: round(percentile(latencies, 50)),
    p99Ms: round(percentile(latencies, 99)),
    maxMs: round(latencies.at(-1) ?? Number.NaN),
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
  const get = async (path: string): Promise<{ ok: boolean; body: unknown }> => {
    const response = await fetch(`${cluster.baseUrl}/api/v1${path}`, { headers });
    const body: unknown = await response.json();
    return { ok: response.ok, body };
  };
  log("warming up");
  for (let i = 0; i < 20; i += 1) await get(`/vms?limit=${pageSize}`);

  log(`list: ${clients} clients for ${seconds} s`);
  const cursors: (string | null)[] = Array.from({ length: clients }, () => null);
  let pagesOfFifty = 0;
  const list = await phase(async (client) => {
    const cursor = cursors[client];
    const { ok, body } = await get(`/vms?limit=${pageSize}${cursor ? `&cursor=${cursor}` : ""}`);
    const page = body as { items?: unknown[]; nextCursor?: string | null };
    if (page.items?.length === pageSize) pagesOfFifty += 1;
    cursors[client] = ok ? (page.nextCursor ?? null) : null;
    return ok;
  });

  log(`get: ${clients} clients for ${seconds} s`);
  let seed = 42;
  const nextId = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return ids[seed % ids.length]!;
  };
  const one = await phase(async () => (await get(`/vms/${nextId()}`)).ok);

  log(`paced list: ${clients} clients, one request each every ${paceMs} ms, for ${seconds} s`);
  const pacedCursors: (string | null)[] = Array.from({ length: clients }, () => null);
  const paced = await phase(async (client) => {
    const cursor = pacedCursors[client];
    const { ok, body } = await get(`/vms?limit=${pageSize}${cursor ? `&cursor=${cursor}` : ""}`);
    pacedCursors[client] = ok ? ((body as { nextCursor?: string | null }).nextCursor ?? null) : null;
    return ok;
  }, paceMs);

  const result = {
    vms: vmCount,
    listedVms: ids.length,
    clients,
    secondsPerPhase: seconds,
    list: { ...list, pageSize, fullPages: pagesOfFifty },
    get: one,
    pacedList: { ...paced, everyMs: paceMs },
    target: { listP99Ms: p99TargetMs, metClosedLoop: list.p99Ms < p99TargetMs, metPaced: paced.p99Ms < p99TargetMs },
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} finally {
  await cluster.stop();
}
