export { createDb, type Db } from "./client.ts";
export { Prisma } from "./generated/client.ts";
export type { Account, ApiToken, GuestState, Session, User, Verification, Vm, VmEvent, Worker } from "./generated/client.ts";
