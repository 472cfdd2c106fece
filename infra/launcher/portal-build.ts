import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

import { repoRoot } from "./config.ts";

const portalDir = join(repoRoot, "apps", "portal");
const stampFile = join(portalDir, ".next", "ferry-sources.sha256");
// The portal bundles the packages it imports, so their sources count as its sources.
const sourceRoots = [portalDir, join(repoRoot, "packages"), join(repoRoot, "prisma", "schema.prisma"), join(repoRoot, "package-lock.json")];
const skipped = new Set(["node_modules", ".next", ".turbo"]);

/** True when apps/portal/.next was built from exactly the sources on disk now. */
export function portalBuildIsCurrent(): boolean {
  return existsSync(join(portalDir, ".next", "BUILD_ID")) && existsSync(stampFile) && readFileSync(stampFile, "utf8") === sourcesHash();
}

/** Remember which sources the build in apps/portal/.next came from. */
export function recordPortalBuild(): void {
  writeFileSync(stampFile, sourcesHash());
}

function sourcesHash(): string {
  const hash = createHash("sha256");
  for (const file of sourceRoots.flatMap(listFiles).sort()) {
    hash.update(relative(repoRoot, file)).update("\0").update(readFileSync(file, "latin1"), "latin1").update("\0");
  }
  return hash.digest("hex");
}

function listFiles(path: string): string[] {
  if (!existsSync(path)) return [];
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path, { withFileTypes: true })
    .filter((entry) => !skipped.has(entry.name) && !entry.name.endsWith(".test.ts"))
    .flatMap((entry) => (entry.isDirectory() ? listFiles(join(path, entry.name)) : entry.isFile() ? [join(path, entry.name)] : []));
}
