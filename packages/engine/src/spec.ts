// The vm spec is data: everything toQemuArgv needs to start a vm, and nothing it has to look
// up. Paths end up inside QEMU option strings, where a comma separates options and a newline
// ends the argument, so both are refused here rather than escaped there.
import { z } from "zod";
import { EngineError } from "./errors.ts";
import { hardwareProfiles, profileNames } from "./profiles.ts";

const idRegex = /^[a-z0-9][a-z0-9-]{0,62}$/;
const idMessage = "must be 1-63 lowercase letters, digits or dashes, starting with a letter or digit";
const macRegex = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

const id = z.string().regex(idRegex, { error: idMessage });

const absolutePath = z
  .string()
  .min(1, { error: "must be an absolute path" })
  .refine((p) => p.startsWith("/"), { error: "must be an absolute path" })
  .refine((p) => !/[,\n\r\0]/.test(p), {
    error: "must not contain a comma, a newline or a NUL (QEMU option syntax)",
  });

/**
 * How much RAM QEMU gives the guest: `exact` is memoryMiB; `trimmed-8k` is 8 KiB less, which a
 * TCG guest first booted on QEMU < 9.0 needs (qemu-argv.ts says why). A migration stream
 * carries the RAM's size, so the choice made at a cold boot holds until the next cold boot.
 */
export const memoryLayouts = ["exact", "trimmed-8k"] as const;
export type MemoryLayout = (typeof memoryLayouts)[number];

/** A memory layout as stored in a database column; anything else (null: not recorded) is undefined. */
export function memoryLayoutOf(value: string | null | undefined): MemoryLayout | undefined {
  return memoryLayouts.find((layout) => layout === value);
}

/** The shape of a vm spec; use parseVmSpec to validate one with readable errors. */
export const vmSpecSchema = z
  .strictObject({
    id,
    vcpus: z.number().int().min(1).max(64),
    memoryMiB: z.number().int().min(64).max(262144),
    /**
     * Chosen at a cold boot (Engine.coldBootMemoryLayout) and recorded with the vm. Unset:
     * trimmed under TCG and exact under KVM, what every vm got before the choice was recorded
     * (a restore takes the guest state's own).
     */
    memoryLayout: z.enum(memoryLayouts).optional(),
    profile: z.enum(profileNames),
    cpuModel: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { error: "must be a QEMU -cpu model name such as qemu64 or Haswell-noTSX" })
      .refine((m) => m !== "host", {
        error: "must be a named QEMU CPU model; 'host' depends on the host's CPU and cannot move between hosts",
      }),
    boot: z.strictObject({
      kernel: absolutePath,
      initrd: absolutePath.optional(),
      cmdline: z.string().max(2048),
    }),
    disks: z.array(z.strictObject({ id, base: absolutePath, overlay: absolutePath })).max(8),
    nics: z
      .array(
        z.strictObject({
          id,
          mac: z.string().regex(macRegex, { error: "must be a lowercase MAC address like 52:54:00:12:34:56" }),
          network: z.enum(["user", "none"]),
        }),
      )
      .max(4),
    display: z.strictObject({ vncSocket: absolutePath }).nullable(),
    serial: z.strictObject({ logFile: absolutePath }),
    parallel: z.strictObject({ logFile: absolutePath }),
  })
  .superRefine((spec, ctx) => {
    for (const [field, items] of [
      ["disks", spec.disks],
      ["nics", spec.nics],
    ] as const) {
      const seen = new Set<string>();
      items.forEach((item, index) => {
        if (seen.has(item.id)) {
          ctx.addIssue({
            code: "custom",
            path: [field, index, "id"],
            message: `must be unique within ${field} (got '${item.id}' twice)`,
          });
        }
        seen.add(item.id);
      });
    }
    const profile = hardwareProfiles[spec.profile];
    if (spec.disks.length > profile.maxDisks) {
      ctx.addIssue({
        code: "custom",
        path: ["disks"],
        message: `must have at most ${profile.maxDisks} entries under the ${profile.name} profile (got ${spec.disks.length})`,
      });
    }
  });

export type VmSpec = z.infer<typeof vmSpecSchema>;

/** Validate untrusted input as a vm spec; throws EngineError("invalid_spec") naming each bad field. */
export function parseVmSpec(input: unknown): VmSpec {
  const result = vmSpecSchema.safeParse(input, { reportInput: true });
  if (result.success) return result.data;
  const problems = result.error.issues.map(describeIssue);
  throw new EngineError(
    "invalid_spec",
    `vm spec is invalid: ${problems.join("; ")}. Fix the listed fields and submit the spec again.`,
    { issues: result.error.issues.map(({ input: _input, ...issue }) => issue) },
  );
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const where = formatPath(issue.path);
  const got = "input" in issue ? ` (got ${formatValue(issue.input)})` : "";
  switch (issue.code) {
    case "too_small":
      return issue.origin === "array"
        ? `${where} must have at least ${issue.minimum} entries${got}`
        : issue.origin === "string"
          ? `${where} must be at least ${issue.minimum} characters long`
          : `${where} must be at least ${issue.minimum}${got}`;
    case "too_big":
      return issue.origin === "array"
        ? `${where} must have at most ${issue.maximum} entries (got ${Array.isArray(issue.input) ? issue.input.length : "more"})`
        : issue.origin === "string"
          ? `${where} must be at most ${issue.maximum} characters long`
          : `${where} must be at most ${issue.maximum}${got}`;
    case "invalid_type":
      return issue.input === undefined
        ? `${where} is required (${typeName(issue.expected)})`
        : `${where} must be ${typeName(issue.expected)}${got}`;
    case "invalid_value":
      return `${where} must be one of ${issue.values.map(formatValue).join(", ")}${got}`;
    case "unrecognized_keys":
      return `${where === "spec" ? "spec" : where} has unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys
        .map((k) => `'${k}'`)
        .join(", ")}; remove ${issue.keys.length > 1 ? "them" : "it"}`;
    default:
      // Regex, refinement and uniqueness failures carry our own "must …" messages.
      return `${where} ${issue.message}${got}`;
  }
}

function typeName(expected: string): string {
  if (expected === "int") return "a whole number";
  return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return "spec";
  return path
    .map((part, i) => (typeof part === "number" ? `[${part}]` : `${i === 0 ? "" : "."}${String(part)}`))
    .join("");
}

function formatValue(value: unknown): string {
  if (typeof value === "string") return `'${value.length > 80 ? `${value.slice(0, 80)}…` : value}'`;
  if (value === null || typeof value !== "object") return String(value);
  return Array.isArray(value) ? "an array" : "an object";
}
