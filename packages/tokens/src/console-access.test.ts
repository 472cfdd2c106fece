import { describe, expect, it } from "vitest";
import { type ConsoleAccessFacts, type ConsoleGrant, consoleAccessRefusal } from "./index.ts";

const now = new Date("2030-01-01T00:00:00Z");
const later = new Date("2030-01-01T01:00:00Z");
const earlier = new Date("2029-12-31T23:00:00Z");

const person: ConsoleGrant = { vmId: "vm-1", userId: "user-1", sessionId: "session-1" };
const program: ConsoleGrant = { vmId: "vm-1", userId: "user-1", apiTokenId: "token-1" };

const valid: ConsoleAccessFacts = {
  vm: { projectId: "project-1", organizationId: "org-1" },
  user: { role: "member" },
  membershipRole: "member",
  apiToken: { projectId: "project-1", scopes: ["vms:read", "console"], revokedAt: null, expiresAt: later },
  session: { expiresAt: later },
  labSeat: null,
};
const student = { membershipRole: null, labSeat: { holderId: "user-1", classStatus: "started" } };
const adminToken = { ...valid.apiToken!, projectId: "project-2", scopes: ["cluster:admin"] };

describe("console access", () => {
  const cases: [string, ConsoleGrant, Partial<ConsoleAccessFacts>, string | null][] = [
    ["a member in the browser keeps it", person, {}, null],
    ["an owner with a console token keeps it", program, { membershipRole: "owner" }, null],
    ["a token without expiry keeps it", program, { apiToken: { ...valid.apiToken!, expiresAt: null } }, null],
    ["a grant with neither token nor session checks the membership only", { vmId: "vm-1", userId: "user-1" }, { apiToken: null, session: null }, null],
    ["a signed-in grant ignores a missing API token", person, { apiToken: null }, null],
    ["a cluster admin needs no membership", person, { user: { role: "admin" }, membershipRole: null }, null],
    ["a cluster admin's cluster:admin token reaches any project", program, { user: { role: "admin" }, membershipRole: null, apiToken: adminToken }, null],
    ["the vm was removed", person, { vm: null }, "the vm no longer exists"],
    ["the account was deleted", person, { user: null }, "your account was deleted"],
    ["the API token was deleted", program, { apiToken: null }, "the API token it was opened with was deleted"],
    ["the API token was revoked", program, { apiToken: { ...valid.apiToken!, revokedAt: earlier } }, "the API token it was opened with was revoked"],
    ["the API token expired", program, { apiToken: { ...valid.apiToken!, expiresAt: now } }, "the API token it was opened with expired at 2030-01-01T00:00:00.000Z"],
    ["a revoked admin token is revoked too", program, { user: { role: "admin" }, apiToken: { ...adminToken, revokedAt: earlier } }, "the API token it was opened with was revoked"],
    ["an admin's token without cluster:admin stays in its project", program, { user: { role: "admin" }, apiToken: { ...valid.apiToken!, projectId: "project-2" } }, "the API token it was opened with belongs to another project"],
    ["the API token lacks the console scope", program, { apiToken: { ...valid.apiToken!, scopes: ["vms:read"] } }, 'the API token it was opened with lacks the "console" scope'],
    ["the portal session was signed out", person, { session: null }, "the portal session it was opened from was signed out"],
    ["the portal session expired", person, { session: { expiresAt: earlier } }, "the portal session it was opened from expired at 2029-12-31T23:00:00.000Z"],
    ["the person left the organization", person, { membershipRole: null }, "you are no longer a member of the vm's organization"],
    ["the person was demoted to viewer", program, { membershipRole: "viewer" }, "your role in the vm's organization is now viewer; a console takes member or above"],
    ["a student holding the vm's seat keeps it without being a member", person, student, null],
    ["a student's own seat holds whatever project their API token is for", program, { ...student, apiToken: { ...valid.apiToken!, projectId: "project-2", scopes: [] } }, null],
    ["a student whose class ended loses it", person, { ...student, labSeat: { holderId: "user-1", classStatus: "ended" } }, "the lab class ended; your vm was suspended and resumes where it was next time"],
    ["a student whose seat was removed loses it", person, { membershipRole: null, labSeat: null }, "you are no longer a member of the vm's organization"],
    ["someone else's seat gives nothing", person, { membershipRole: null, labSeat: { holderId: "user-2", classStatus: "started" } }, "you are no longer a member of the vm's organization"],
    ["a seat not yet taken by anyone gives nothing", person, { membershipRole: null, labSeat: { holderId: null, classStatus: "started" } }, "you are no longer a member of the vm's organization"],
    ["a member keeps it on a seat's vm even after the class ended (the instructor)", person, { labSeat: { holderId: "user-2", classStatus: "ended" } }, null],
    ["a student's session signed out still closes it", person, { ...student, session: null }, "the portal session it was opened from was signed out"],
    ["an unknown role counts for nothing", person, { membershipRole: "guest" }, "your role in the vm's organization is now guest; a console takes member or above"],
  ];
  it.each(cases)("%s", (_name, grant, facts, refusal) => {
    expect(consoleAccessRefusal(grant, { ...valid, ...facts }, now)).toBe(refusal);
  });
});
