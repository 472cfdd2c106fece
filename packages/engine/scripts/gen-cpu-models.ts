// Regenerates src/cpu-models.generated.ts from the QEMU on this machine:
//   npx tsx packages/engine/scripts/gen-cpu-models.ts [path/to/qemu-system-x86_64]
//
// Why KVM: the table answers "which host CPU flags does a guest with this model need under
// KVM?". QEMU applies accelerator defaults when it expands a model (under TCG it drops `vme`;
// under KVM it drops `monitor`/`svm`/`acpi` and adds KVM's paravirtual features), so the KVM
// expansion is the guest's real view. The guest never runs (-S), so hosts where KVM cannot
// boot a guest still answer these queries.
//
// Why -machine pc-q35-7.2: an unversioned model name ("Skylake-Client") resolves to a
// versioned one through the machine type (v1 on pc-q35-7.2, the newest version on -machine
// none), and the profiles run pc-q35-7.2.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { hardwareProfiles } from "../src/profiles.ts";

const qemuBinary = process.argv[2] ?? "/usr/bin/qemu-system-x86_64";
const machineType = hardwareProfiles.standard.machineType;
const outputPath = fileURLToPath(new URL("../src/cpu-models.generated.ts", import.meta.url));

// Features a host's /proc/cpuinfo cannot show, so a flag check cannot use them: KVM's own
// paravirtual features, and bits of MSRs (IA32_ARCH_CAPABILITIES, IA32_CORE_CAPABILITIES)
// rather than of CPUID.
const notCpuinfoFlags = new Set([
  "core-capability",
  "split-lock-detect",
  "ibrs-all",
  "rdctl-no",
  "skip-l1dfl-vmentry",
  "mds-no",
  "pschange-mc-no",
  "taa-no",
  "ssb-no",
  "tsx-ctrl",
]);

// QEMU names whose /proc/cpuinfo spelling is not just "-" and "." turned into "_". The
// speculation-control bits show in cpuinfo under the kernel's synthetic names.
const cpuinfoName: Record<string, string> = {
  "tsc-deadline": "tsc_deadline_timer",
  ds: "dts",
  cr8legacy: "cr8_legacy",
  avx512vbmi2: "avx512_vbmi2",
  avx512vnni: "avx512_vnni",
  avx512bitalg: "avx512_bitalg",
  "spec-ctrl": "ibrs",
  "amd-stibp": "stibp",
  "amd-ssbd": "ssbd",
};

function toCpuinfoFlag(feature: string): string {
  return cpuinfoName[feature] ?? feature.replace(/[-.]/g, "_");
}

interface QmpReply {
  return?: unknown;
  error?: { class: string; desc: string };
}

async function main(): Promise<void> {
  const qemu = spawn(
    qemuBinary,
    ["-machine", machineType, "-accel", "kvm", "-S", "-nodefaults", "-display", "none", "-qmp", "stdio"],
    // stderr only carries warnings about features this host lacks, which do not matter here.
    { stdio: ["pipe", "pipe", "ignore"] },
  );
  const spawned = new Promise<void>((resolve, reject) => {
    qemu.once("spawn", resolve);
    qemu.once("error", (error) =>
      reject(new Error(`cannot start ${qemuBinary} (${error.message}); install qemu-system-x86 or pass the binary's path`)),
    );
  });
  await spawned;
  const deadline = setTimeout(() => {
    qemu.kill("SIGKILL");
    console.error("gen-cpu-models: QEMU did not answer within 30 s; killed it");
    process.exit(1);
  }, 30_000);

  const lines = createInterface({ input: qemu.stdout })[Symbol.asyncIterator]();
  async function nextMessage(): Promise<Record<string, unknown>> {
    for (;;) {
      const { value, done } = await lines.next();
      if (done) {
        throw new Error(
          `QEMU exited before answering (exit code ${qemu.exitCode}); run \`${qemuBinary} -machine ${machineType} -accel kvm -S -display none\` to see why (is /dev/kvm usable?)`,
        );
      }
      const message = JSON.parse(value) as Record<string, unknown>;
      if (!("event" in message)) return message;
    }
  }
  async function execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    qemu.stdin.write(`${JSON.stringify({ execute: command, arguments: args })}\n`);
    const reply = (await nextMessage()) as QmpReply;
    if (reply.error) throw new Error(`QMP ${command} failed: ${reply.error.desc}`);
    return reply.return;
  }

  const greeting = (await nextMessage()) as {
    QMP: { version: { qemu: { major: number; minor: number; micro: number }; package: string } };
  };
  const { qemu: v, package: pkg } = greeting.QMP.version;
  await execute("qmp_capabilities");

  const definitions = (await execute("query-cpu-definitions")) as Array<{
    name: string;
    "alias-of"?: string;
    deprecated: boolean;
  }>;
  const candidates = definitions
    .filter((d) => !d.deprecated && !/-v\d+$/.test(d.name) && !["host", "max", "base"].includes(d.name))
    .sort((a, b) => a.name.localeCompare(b.name));

  const rows: string[] = [];
  for (const definition of candidates) {
    const expansion = (await execute("query-cpu-model-expansion", {
      type: "static",
      model: { name: definition.name },
    })) as { model: { props: Record<string, unknown> } };
    const qemuFeatures = Object.entries(expansion.model.props)
      .filter(([name, on]) => on === true && !name.startsWith("kvm") && !notCpuinfoFlags.has(name))
      .map(([name]) => name);
    // Ferry's guests are 64-bit: a model without long mode cannot boot them.
    if (!qemuFeatures.includes("lm")) continue;
    const flags = [...new Set(qemuFeatures.map(toCpuinfoFlag))].sort();
    const resolved = definition["alias-of"] ? ` (${definition["alias-of"]})` : "";
    rows.push(`  // ${definition.name}${resolved}\n  ${JSON.stringify(definition.name)}: ${JSON.stringify(flags)},`);
  }
  await execute("quit");
  clearTimeout(deadline);

  const header = [
    "// GENERATED FILE, do not edit: npx tsx packages/engine/scripts/gen-cpu-models.ts",
    `// From QEMU ${v.major}.${v.minor}.${v.micro} (${pkg}) on -machine ${machineType} -accel kvm:`,
    "// QMP query-cpu-definitions, then query-cpu-model-expansion (type static) for every",
    "// unversioned, non-deprecated model with long mode. Each model lists the CPU flags the",
    "// guest sees, spelled as in /proc/cpuinfo; the comment names the version it resolves to.",
  ].join("\n");
  writeFileSync(
    outputPath,
    `${header}\n\n/** CPU flags (in /proc/cpuinfo spelling) each QEMU CPU model presents to the guest under KVM. */\nexport const cpuModelFeatures: Record<string, readonly string[]> = {\n${rows.join("\n")}\n};\n`,
  );
  console.log(`wrote ${rows.length} CPU models to ${outputPath}`);
}

main().catch((error: unknown) => {
  console.error(`gen-cpu-models: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
