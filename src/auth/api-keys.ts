/**
 * API keys for the brokerage API (GitHub issue #12, item 1): generation, hashing and the Authorization
 * header. Pure functions (randomness from node:crypto); storage is `MongoApiKeyStore`
 * (src/adapters/mongo/api-key-store.ts), caching is `createAuthenticator` (src/auth/authenticator.ts).
 *
 * Token layout: `ok_<id>_<secret>`. `id` (12 lowercase hex characters) names the key in listings and
 * revocations and is not secret; `secret` is 32 random bytes, base64url (43 characters). Only the
 * token's hash is stored; the token itself is shown once, when the key is created.
 */
import { createHash, randomBytes } from "node:crypto";

export const API_KEY_PREFIX = "ok_";
/** Longer Authorization values are refused before any hashing or look-up (a token is 59 characters). */
export const MAX_TOKEN_LENGTH = 200;

const TOKEN_CHARACTERS = /^[A-Za-z0-9_-]+$/;
const BEARER = /^bearer +/i;
const ACCOUNT = /^[A-Za-z0-9._-]{1,64}$/;
/** Labels are one line of printable text (listings print one key per line). */
export const MAX_LABEL_LENGTH = 200;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
const CONTROL = /[\u0000-\u001f\u007f]/;

export interface GeneratedApiKey {
  id: string;
  token: string;
}

export function generateApiKey(): GeneratedApiKey {
  const id = randomBytes(6).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  return { id, token: `${API_KEY_PREFIX}${id}_${secret}` };
}

/**
 * SHA-256, hex. A token carries 256 random bits, so a fast unsalted hash is the standard choice (as for
 * GitHub's and Stripe's tokens): nothing can be guessed from it, and a look-up by hash equality stays
 * one indexed read per request. A slow password hash (bcrypt, argon2) defends low-entropy secrets
 * against guessing and would only cost CPU on every request here.
 */
export function hashApiKey(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/**
 * The token of an `Authorization: Bearer <token>` header, or null when the header is absent, another
 * scheme, empty, longer than MAX_TOKEN_LENGTH or has characters a token never has. Only the shape is
 * checked here; whether the key exists is the store's question.
 */
export function parseBearer(authorizationHeader: string | null): string | null {
  // A header this long cannot hold a token (bar absurd padding): refused before any pattern runs.
  if (authorizationHeader === null || authorizationHeader.length > MAX_TOKEN_LENGTH + 16) return null;
  const header = authorizationHeader.trim();
  if (!BEARER.test(header)) return null;
  const token = header.replace(BEARER, "");
  if (token.length === 0 || token.length > MAX_TOKEN_LENGTH || !TOKEN_CHARACTERS.test(token)) return null;
  return token;
}

/** Account names: 1 to 64 characters of `[A-Za-z0-9._-]`. */
export function isValidAccount(account: string): boolean {
  return ACCOUNT.test(account);
}

/** Labels: at most MAX_LABEL_LENGTH characters, no control characters (empty is allowed). */
export function isValidLabel(label: string): boolean {
  return label.length <= MAX_LABEL_LENGTH && !CONTROL.test(label);
}

export class InvalidAccountError extends Error {
  readonly code = "API_KEY_ACCOUNT_INVALID";
  constructor(readonly account: string) {
    super(`invalid account name ${JSON.stringify(account)}: 1 to 64 characters of A-Z a-z 0-9 . _ -`);
    this.name = "InvalidAccountError";
  }
}

export class InvalidLabelError extends Error {
  readonly code = "API_KEY_LABEL_INVALID";
  constructor() {
    super(`invalid label: at most ${MAX_LABEL_LENGTH} characters, no control characters (one line)`);
    this.name = "InvalidLabelError";
  }
}
