export { createDb, type Db, isDatabaseBusy, isoTimestampSql, queryPrepared } from "./client.ts";
export { Prisma } from "./generated/client.ts";
export type { Account, ApiToken, AuditEntry, GuestState, Membership, Organization, Project, Session, User, Verification, Vm, VmEvent, Worker } from "./generated/client.ts";
