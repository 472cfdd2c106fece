export { TokenError, type TokenErrorCode } from "./errors.ts";
export { consoleModes, signConsoleToken, verifyConsoleToken, type ConsoleMode, type ConsoleToken } from "./console-token.ts";
export { consoleAccessRefusal, type ConsoleAccessFacts, type ConsoleGrant } from "./console-access.ts";
export { signLabLink, verifyLabLink, type LabLink } from "./lab-link.ts";
export { signRelayTicket, verifyRelayTicket } from "./relay-ticket.ts";
export { newWebhookSalt, webhookSignature, webhookSignatureHeader, webhookSigningSecret } from "./webhook-signature.ts";
