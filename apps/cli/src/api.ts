// The portal's REST API (/api/v1), the only thing the CLI talks to. Failures become a
// CommandError carrying the API's own `error.code` and `error.message`.
import { CommandError } from "./errors.ts";
import type { Login } from "./config.ts";

/** The vm object every vm endpoint returns (see GET /api/v1/openapi.json). */
export interface Vm {
  id: string;
  name: string;
  ownerId: string;
  projectId: string;
  image: string;
  vcpus: number;
  memoryMiB: number;
  profile: string;
  cpuModel: string;
  state: string;
  desiredState: string;
  stateReason: string | null;
  workerId: string | null;
  accelerator: string | null;
  generation: number;
  operation: string | null;
  progress: { done: number; total: number } | null;
  createdAt: string;
  stateChangedAt: string;
}

export interface Worker {
  id: string;
  hostname: string;
  status: string;
  accelerator: string;
  vcpusTotal: number;
  vcpusFree: number;
  memoryMiBTotal: number;
  memoryMiBFree: number;
  cpuModelName: string;
  qemuVersion: string;
  lastHeartbeatAt: string;
}

/** What a project may use and what it uses: vCPUs and memory of the vms wanted running, vms, stored guest state bytes. */
export interface Resources {
  vcpus: number;
  memoryMiB: number;
  vms: number;
  stateBytes: number;
}

export interface Project {
  id: string;
  organizationId: string;
  name: string;
  role: string;
  quota: Resources;
  usage: Resources;
  createdAt: string;
}

export interface Organization {
  id: string;
  name: string;
  role: string;
  createdAt: string;
}

/** A lab template (GET /templates): a published vm, its versions newest first. */
export interface LabTemplate {
  id: string;
  name: string;
  ownerId: string;
  projectId: string;
  createdAt: string;
  versions: {
    id: string;
    version: number;
    /** publishing | ready | failed */
    status: string;
    statusReason: string | null;
    sourceVmId: string;
    image: string;
    vcpus: number;
    memoryMiB: number;
    storedBytes: number | null;
    createdAt: string;
    publishedAt: string | null;
  }[];
}

/** A student's place in a class, as the instructor sees it. */
export interface LabSeat {
  id: string;
  email: string;
  userId: string | null;
  vmId: string | null;
  vmState: string | null;
  workerId: string | null;
  usedSeconds: number;
  extraMinutes: number;
  secondsLeft: number;
  sessionSecondsLeft: number;
  controlledBy: { id: string; name: string } | null;
}

/** A lab class (GET /classes/{id}); the list's items have no `seats`. */
export interface LabClass {
  id: string;
  projectId: string;
  templateId: string;
  templateName: string;
  templateVersion: number;
  name: string;
  opensAt: string;
  closesAt: string;
  sessionMinutes: number;
  totalMinutes: number;
  joinCode: string | null;
  joinCodeExpiresAt: string | null;
  /** scheduled | started | ended */
  status: string;
  whenFull: string;
  seatCount: number;
  seats?: LabSeat[];
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

const requestTimeoutMs = 30_000;

/** A REST client for one portal and token. */
export class FerryApi {
  constructor(readonly login: Login) {}

  /** Send one request; resolve with the parsed body of a 2xx answer, reject with a CommandError otherwise. */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = `${this.login.url}/api/v1${path}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: { authorization: `Bearer ${this.login.token}`, accept: "application/json", ...(body === undefined ? {} : { "content-type": "application/json" }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(requestTimeoutMs),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (error as Error).message;
      throw new CommandError(`cannot reach the portal at ${this.login.url} (${why}). Check that it is running, or log in again with the right --url.`, "unreachable");
    }
    const text = await response.text();
    const parsed = parseJson(text);
    if (response.ok) {
      if (parsed === undefined && text !== "") throw new CommandError(`${method} ${url} answered ${response.status} with a body that is not JSON; is ${this.login.url} a Ferry portal?`);
      return parsed as T;
    }
    const error = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    if (typeof error?.message === "string") {
      throw new CommandError(error.message, typeof error.code === "string" ? error.code : undefined, response.status);
    }
    throw new CommandError(`${method} ${url} answered ${response.status} ${response.statusText}; is ${this.login.url} a Ferry portal?`, undefined, response.status);
  }

  /** Every item of a paginated list (`/vms`, `/projects?…`...), walking its cursors. */
  async all<T>(path: string): Promise<T[]> {
    const items: T[] = [];
    let cursor: string | null = null;
    do {
      const query: string = `${path.includes("?") ? "&" : "?"}limit=100${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`;
      const page: Page<T> = await this.request<Page<T>>("GET", `${path}${query}`);
      items.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor !== null);
    return items;
  }

  /** Every vm visible to the token. */
  allVms(): Promise<Vm[]> {
    return this.all<Vm>("/vms");
  }

  /** The vm a person named on the command line: by id, or by name when it is not an id. */
  async findVm(idOrName: string): Promise<Vm> {
    if (uuid.test(idOrName)) return this.request<Vm>("GET", `/vms/${idOrName}`);
    const named = (await this.allVms()).filter((vm) => vm.name === idOrName);
    if (named.length === 1) return named[0]!;
    if (named.length === 0) throw new CommandError(`no vm named "${idOrName}" is visible to you; 'ferry vm list' shows your vms`, "vm_not_found", 404);
    throw new CommandError(`${named.length} vms are named "${idOrName}" (${named.map((vm) => vm.id).join(", ")}); name one by its id`, "ambiguous_name");
  }

  /** The lab class a person named on the command line, with its seats: by id, or by name when it is not an id. */
  async findClass(idOrName: string): Promise<LabClass & { seats: LabSeat[] }> {
    if (uuid.test(idOrName)) return this.request("GET", `/classes/${idOrName}`);
    const named = (await this.all<LabClass>("/classes")).filter((labClass) => labClass.name === idOrName);
    if (named.length === 1) return this.request("GET", `/classes/${named[0]!.id}`);
    if (named.length === 0) throw new CommandError(`no class named "${idOrName}" is visible to you; 'ferry class list' shows your classes`, "not_found", 404);
    throw new CommandError(`${named.length} classes are named "${idOrName}" (${named.map((c) => c.id).join(", ")}); name one by its id`, "ambiguous_name");
  }

  /** The lab template a person named: by id, or by name when it is not an id. */
  async findTemplate(idOrName: string): Promise<LabTemplate> {
    const templates = await this.all<LabTemplate>("/templates");
    const found = templates.filter((template) => (uuid.test(idOrName) ? template.id === idOrName : template.name === idOrName));
    if (found.length === 1) return found[0]!;
    if (found.length === 0) throw new CommandError(`no template "${idOrName}" is visible to you; 'ferry template list' shows your templates`, "not_found", 404);
    throw new CommandError(`${found.length} templates are named "${idOrName}" (in projects ${found.map((t) => t.projectId).join(", ")}); name one by its id`, "ambiguous_name");
  }
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
