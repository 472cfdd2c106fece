import { FerryApi } from "../api.ts";
import type { Command } from "../command.ts";
import { normalizeUrl, saveLogin } from "../config.ts";
import { UsageError } from "../errors.ts";

export const loginCommand: Command = {
  words: ["login"],
  args: [],
  summary: "Check a portal URL and API token, and save them for the other commands",
  options: {
    url: { type: "string", placeholder: "<portal url>", description: "the portal, e.g. http://localhost:3000 (default: FERRY_URL)" },
    token: { type: "string", placeholder: "<API token>", description: "an API token of yours (default: FERRY_TOKEN)" },
  },
  waits: false,
  async run({ env, values, json, print }) {
    const url = (values.url as string | undefined) ?? env.url;
    const token = (values.token as string | undefined) ?? env.token;
    if (url === undefined || token === undefined) throw new UsageError(`missing ${url === undefined ? "--url" : "--token"}; run 'ferry login --url <portal url> --token <API token>'`);
    if (!/^https?:\/\/[^/]/.test(url)) throw new UsageError(`--url ${url} is not an http:// or https:// URL; give the portal's address, e.g. http://localhost:3000`);
    const login = { url: normalizeUrl(url), token };
    // Any authenticated call proves the pair; the cheapest is one vm of the list.
    await new FerryApi(login).request("GET", "/vms?limit=1");
    saveLogin(env, login);
    print(json ? JSON.stringify({ url: login.url, configFile: env.configFile }) : `logged in to ${login.url}; saved in ${env.configFile}`);
  },
};
