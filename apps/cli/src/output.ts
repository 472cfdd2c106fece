// What the CLI prints for people: tables and key/value lists on stdout, and the progress of a
// long operation on stderr (rewritten in place on a terminal, one line per change otherwise).

/** Columns aligned with two spaces; the first row is the header. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? "").length))) ?? [];
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0))).join("  ")).join("\n");
}

/** "key: value" lines with the values aligned. */
export function fields(entries: readonly [string, string][]): string {
  const width = Math.max(...entries.map(([key]) => key.length)) + 1;
  return entries.map(([key, value]) => `${`${key}:`.padEnd(width)} ${value}`).join("\n");
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function formatMemory(mib: number): string {
  return mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

/** A one-line status on stderr that a long operation updates as the vm moves. */
export class ProgressLine {
  private last = "";
  private lastPercentStep = -1;
  private open = false;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}

  /** Show `line`; `percent` marks a progress update, which a log (not a terminal) gets only every 10 %. */
  show(line: string, percent?: number): void {
    if (line === this.last) return;
    this.last = line;
    if (this.stream.isTTY) {
      this.stream.write(`\r\u001b[K${line}`);
      this.open = true;
      return;
    }
    if (percent !== undefined) {
      const step = Math.floor(percent / 10);
      if (step === this.lastPercentStep) return;
      this.lastPercentStep = step;
    } else {
      this.lastPercentStep = -1;
    }
    this.stream.write(`${line}\n`);
  }

  /** Keep the current line as it is and move below it. */
  end(): void {
    if (this.open) this.stream.write("\n");
    this.open = false;
  }
}
