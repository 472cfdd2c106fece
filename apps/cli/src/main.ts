// `ferry`: the portal's REST API on the command line. Picks the command from the leading
// words, parses its options, runs it, and turns failures into an exit status:
// 0 ok, 1 the API refused (its error.message is printed), 2 usage error.
import { parseArgs } from "node:util";
import { FerryApi } from "./api.ts";
import type { Command, OptionSpec } from "./command.ts";
import { classCommands, templateCommands } from "./commands/lab.ts";
import { loginCommand } from "./commands/login.ts";
import { projectListCommand } from "./commands/project.ts";
import { vmCommands } from "./commands/vm.ts";
import { workerListCommand } from "./commands/worker.ts";
import { currentLogin } from "./config.ts";
import { parseEnv, type CliEnv } from "./env.ts";
import { CommandError, UsageError } from "./errors.ts";

const commands: Command[] = [loginCommand, projectListCommand, ...vmCommands, workerListCommand, ...templateCommands, ...classCommands];

const commonOptions: Record<string, OptionSpec> = {
  json: { type: "boolean", description: "print the API's objects as JSON on stdout" },
  help: { type: "boolean", description: "show this help" },
};
const waitOptions: Record<string, OptionSpec> = {
  wait: { type: "boolean", description: "return once the portal accepted the request, without waiting for the vm" },
  timeout: { type: "string", placeholder: "<seconds>", description: "give up waiting after this long (default 600)" },
};

function commandHelp(command: Command): string {
  const options = { ...command.options, ...(command.waits ? waitOptions : {}), ...commonOptions };
  const lines = Object.entries(options).map(([name, spec]) => {
    const flag = name === "wait" ? "--no-wait" : `--${name}${spec.placeholder ? ` ${spec.placeholder}` : ""}`;
    return [flag, spec.description] as const;
  });
  const width = Math.max(...lines.map(([flag]) => flag.length));
  return [
    `usage: ferry ${[...command.words, ...command.args].join(" ")} [options]`,
    "",
    command.summary,
    "",
    "options:",
    ...lines.map(([flag, description]) => `  ${flag.padEnd(width)}  ${description}`),
  ].join("\n");
}

function overview(prefix: string[] = []): string {
  const shown = commands.filter((command) => prefix.every((word, i) => command.words[i] === word));
  const rows = shown.map((command) => [`ferry ${[...command.words, ...command.args].join(" ")}`, command.summary] as const);
  const width = Math.max(...rows.map(([usage]) => usage.length));
  return [
    `usage: ferry ${prefix.length > 0 ? `${prefix.join(" ")} ` : ""}<command> [options]`,
    "",
    ...rows.map(([usage, summary]) => `  ${usage.padEnd(width)}  ${summary}`),
    "",
    "Every command takes --json and --help. Log in first: ferry login --url <portal url> --token <API token>",
    "(FERRY_URL and FERRY_TOKEN override the saved login). Exit status: 0 ok, 1 refused by the API, 2 usage error.",
  ].join("\n");
}

/** Run the CLI on `argv` (without node and script); resolves with the exit status. */
export async function main(argv: string[], env: CliEnv): Promise<number> {
  const firstOption = argv.findIndex((arg) => arg.startsWith("-"));
  const words = firstOption === -1 ? argv : argv.slice(0, firstOption);
  const command = commands
    .filter((candidate) => candidate.words.every((word, i) => words[i] === word))
    .sort((a, b) => b.words.length - a.words.length)[0];
  if (command === undefined) {
    const helpAsked = argv.includes("--help") || argv.includes("-h");
    const known = words.filter((_, i) => commands.some((c) => c.words.slice(0, i + 1).join(" ") === words.slice(0, i + 1).join(" ")));
    if (helpAsked) {
      process.stdout.write(`${overview(known)}\n`);
      return 0;
    }
    process.stderr.write(`${words.length > 0 ? `ferry: unknown command '${words.join(" ")}'\n\n` : ""}${overview(known)}\n`);
    return 2;
  }
  const rest = argv.slice(command.words.length);
  const specs = { ...command.options, ...(command.waits ? waitOptions : {}), ...commonOptions };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rest,
      options: Object.fromEntries(Object.entries(specs).map(([name, spec]) => [name, { type: spec.type, ...(name === "help" ? { short: "h" } : {}) }])),
      allowPositionals: true,
      allowNegative: true,
      strict: true,
    });
  } catch (error) {
    return usage(command, (error as Error).message);
  }
  const { positionals } = parsed;
  // Every option is declared without `multiple`, so no value is an array.
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) {
    process.stdout.write(`${commandHelp(command)}\n`);
    return 0;
  }
  if (positionals.length !== command.args.length) {
    return usage(command, command.args.length === 0 ? `unexpected argument '${positionals[0]}'` : `expected ${command.args.join(" ")}, got ${positionals.length === 0 ? "nothing" : positionals.map((p) => `'${p}'`).join(" ")}`);
  }
  let timeoutMs = 600_000;
  if (values.timeout !== undefined) {
    const seconds = Number(values.timeout);
    if (!Number.isFinite(seconds) || seconds <= 0) return usage(command, `--timeout ${String(values.timeout)} is not a positive number of seconds`);
    timeoutMs = seconds * 1000;
  }
  try {
    await command.run({
      env,
      values,
      positionals,
      json: values.json === true,
      wait: values.wait !== false,
      timeoutMs,
      api: () => new FerryApi(currentLogin(env)),
      print: (text) => process.stdout.write(`${text}\n`),
    });
    return 0;
  } catch (error) {
    if (error instanceof UsageError) return usage(command, error.message);
    if (error instanceof CommandError) {
      process.stderr.write(`ferry: ${error.message}\n`);
      return error.exitCode;
    }
    throw error;
  }
}

function usage(command: Command, problem: string): number {
  process.stderr.write(`ferry: ${problem}\nsee 'ferry ${command.words.join(" ")} --help'\n`);
  return 2;
}

let env: CliEnv;
try {
  env = parseEnv(process.env);
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n`);
  process.exit(2);
}
process.exitCode = await main(process.argv.slice(2), env);
