// The portal process: one port for the pages, tRPC, auth (all through Next) and the REST API
// (straight to its handler, see server/http.ts). Run with NODE_ENV=production after
// `next build`, or NODE_ENV=development for Next's dev server.
import { fileURLToPath } from "node:url";
import next from "next";
import { env } from "./env.ts";
import { createPortalServer } from "./server/http.ts";

const { FERRY_PORT: port, NODE_ENV: mode } = env();
const app = next({ dev: mode !== "production", dir: fileURLToPath(new URL("..", import.meta.url)), port });
await app.prepare();
const server = createPortalServer(app.getRequestHandler());
// Next's dev server reloads pages over a websocket.
server.on("upgrade", app.getUpgradeHandler());
server.listen(port, () => process.stdout.write(`portal: listening on http://localhost:${port} (${mode})\n`));
