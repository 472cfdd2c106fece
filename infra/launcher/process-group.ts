import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";

const WORKER_STOP_TIMEOUT_MS = 60_000;
const OTHER_STOP_TIMEOUT_MS = 15_000;

interface StartOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Workers are stopped first and given longer: they shut their guests down. */
  isWorker?: boolean;
}

interface Member {
  name: string;
  child: ChildProcess;
  isWorker: boolean;
  exited: Promise<number | string>;
}

/**
 * The processes the launcher started. Each runs in a process group of its own, so stopping one
 * also stops what it spawned (tsx's node, next's server), and Ctrl-C in the terminal reaches
 * only the launcher, which then stops them in order.
 */
export class ProcessGroup {
  private readonly members: Member[] = [];
  private stopping = false;
  private unexpectedExit: (name: string, code: number | string) => void = () => undefined;

  constructor(private readonly logDir: string) {}

  /** Start a long-running process; its output goes to the terminal (prefixed) and to logs/<name>.log. */
  start(name: string, command: string, args: string[], options: StartOptions): void {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const exited = this.pipe(name, child);
    const member: Member = { name, child, isWorker: options.isWorker ?? false, exited };
    this.members.push(member);
    void exited.then((code) => {
      if (!this.stopping) this.unexpectedExit(name, code);
    });
  }

  /** Run a command to completion with prefixed output; rejects when it fails. */
  async runToEnd(name: string, command: string, args: string[], options: StartOptions): Promise<void> {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const member: Member = { name, child, isWorker: false, exited: this.pipe(name, child) };
    this.members.push(member);
    const code = await member.exited;
    this.members.splice(this.members.indexOf(member), 1);
    if (code !== 0) throw new Error(`${name} failed (${code}); see ${join(this.logDir, `${name}.log`)}`);
  }

  onUnexpectedExit(listener: (name: string, code: number | string) => void): void {
    this.unexpectedExit = listener;
  }

  /** Workers first, then everything else; SIGTERM, then SIGKILL after a timeout. */
  async stopAll(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.members.filter((member) => member.isWorker).map((member) => stopMember(member, WORKER_STOP_TIMEOUT_MS)));
    await Promise.all(this.members.filter((member) => !member.isWorker).map((member) => stopMember(member, OTHER_STOP_TIMEOUT_MS)));
  }

  private pipe(name: string, child: ChildProcess): Promise<number | string> {
    const log = createWriteStream(join(this.logDir, `${name}.log`), { flags: "a" });
    const prefix = `${name.padEnd(8)} | `;
    const lines = [child.stdout, child.stderr].map((stream) => forwardLines(stream, prefix, log));
    return new Promise((resolve) => {
      child.on("error", (error) => {
        process.stdout.write(`${prefix}could not start: ${error.message}\n`);
        log.end();
        resolve(error.message);
      });
      child.on("close", async (code, signal) => {
        await Promise.all(lines);
        log.end();
        resolve(code ?? signal ?? "unknown");
      });
    });
  }
}

function forwardLines(stream: Readable | null, prefix: string, log: WriteStream): Promise<void> {
  if (!stream) return Promise.resolve();
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  lines.on("line", (line) => {
    process.stdout.write(`${prefix}${line}\n`);
    log.write(`${line}\n`);
  });
  return new Promise((resolve) => lines.on("close", resolve));
}

async function stopMember(member: Member, timeoutMs: number): Promise<void> {
  const pid = member.child.pid;
  if (pid === undefined || member.child.exitCode !== null || member.child.signalCode !== null) return;
  // Only the leader is asked to stop: tsx passes the signal on to its node child itself, and a
  // second copy sent to the whole group would make a worker begin its shutdown twice.
  signalProcess(pid, "SIGTERM");
  const timer = setTimeout(() => {
    process.stdout.write(`${member.name.padEnd(8)} | did not stop within ${timeoutMs / 1000} s; killing it\n`);
    signalGroup(pid, "SIGKILL");
  }, timeoutMs);
  await member.exited;
  clearTimeout(timer);
  // Whatever the process left behind in its group (a stray child) goes too.
  signalGroup(pid, "SIGKILL");
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  signalProcess(-pid, signal);
}

function signalProcess(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}
