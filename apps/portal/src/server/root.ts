import { auditRouter } from "./routers/audit.ts";
import { labRouter } from "./routers/lab.ts";
import { labClassRouter } from "./routers/lab-class.ts";
import { labSeatRouter } from "./routers/lab-seat.ts";
import { migrationRouter } from "./routers/migration.ts";
import { tenancyRouter } from "./routers/tenancy.ts";
import { tokenRouter } from "./routers/token.ts";
import { vmRouter } from "./routers/vm.ts";
import { webhookRouter } from "./routers/webhook.ts";
import { workerRouter } from "./routers/worker.ts";
import { createCallerFactory, createTRPCRouter } from "./trpc.ts";

/** Every procedure the portal offers; the UI calls it over tRPC, programs over REST. */
export const appRouter = createTRPCRouter({
  vm: vmRouter,
  worker: workerRouter,
  migration: migrationRouter,
  tenancy: tenancyRouter,
  token: tokenRouter,
  audit: auditRouter,
  webhook: webhookRouter,
  lab: labRouter,
  labClass: labClassRouter,
  labSeat: labSeatRouter,
});

export type AppRouter = typeof appRouter;

/** Call procedures in-process, e.g. from tests or server components. */
export const createCaller = createCallerFactory(appRouter);
