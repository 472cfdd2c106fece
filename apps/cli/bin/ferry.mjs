#!/usr/bin/env node
// The `ferry` command. The CLI is TypeScript without a build step, like the other apps: tsx
// compiles it on the fly. Node resolves `tsx` from the repo this file really lives in, also
// when it is reached through the /usr/local/bin/ferry symlink.
import { register } from "tsx/esm/api";

register({ tsconfig: false });
await import("../src/main.ts");
