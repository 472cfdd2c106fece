// What a command is: its words, arguments, options and help; main.ts parses the command line
// against this and calls `run`.
import type { FerryApi } from "./api.ts";
import type { CliEnv } from "./env.ts";

export interface OptionSpec {
  type: "string" | "boolean";
  description: string;
  /** Shown in help after a string option: `--memory <MiB>`. */
  placeholder?: string;
}

export interface CommandContext {
  env: CliEnv;
  /** The command's options by name (without the common ones). */
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
  json: boolean;
  /** False with --no-wait: return once the portal has accepted the request. */
  wait: boolean;
  timeoutMs: number;
  api(): FerryApi;
  print(text: string): void;
}

export interface Command {
  /** The words that select it: ["vm", "create"]. */
  words: string[];
  /** Its positional arguments for help, e.g. ["<id|name>"]; they are all required. */
  args: string[];
  summary: string;
  options: Record<string, OptionSpec>;
  /** A long operation: gets --no-wait and --timeout. */
  waits: boolean;
  run(context: CommandContext): Promise<void>;
}
