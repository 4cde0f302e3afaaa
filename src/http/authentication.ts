/**
 * Who is calling: the account behind the request's API key (Authorization: Bearer <key>), resolved
 * before the body is validated, so that a caller without a valid key learns nothing but 401; then the
 * account's rate limit. With AUTH_MODE=off every request belongs to one local account.
 */
import { Elysia } from "elysia";
import { UnauthenticatedError } from "../domain/errors.ts";
import { admit, type RateLimiting } from "./rate-limit.ts";

/** The account of an Authorization header, or null when the key is missing, unknown or revoked. */
export type AccountResolver = (authorization: string | null) => Promise<{ account: string } | null>;

/** The account every request belongs to when authentication is off (local experiments only). */
export const LOCAL_ACCOUNT = "local";

export type Authentication = { mode: "api-key"; resolve: AccountResolver } | { mode: "off" };

export function callerAccount(auth: Authentication, rateLimiting: RateLimiting | null) {
  return new Elysia({ name: "caller-account" }).derive({ as: "scoped" }, async ({ request, set }) => {
    const account = await authenticate(auth, request.headers.get("authorization"));
    await admit(rateLimiting, account, set.headers);
    return { account };
  });
}

/**
 * The account of an Authorization header, or UnauthenticatedError. Cheap to call twice for one request:
 * the resolver caches its answers (the body parser asks first, so that no body is read for a stranger).
 */
export async function authenticate(auth: Authentication, header: string | null): Promise<string> {
  if (auth.mode === "off") return LOCAL_ACCOUNT;
  if (header === null || header.trim() === "") throw new UnauthenticatedError("missing");
  const principal = await auth.resolve(header);
  if (principal === null) throw new UnauthenticatedError("invalid");
  return principal.account;
}

/** RFC 6750: the challenge a 401 carries, with the error code when a key was sent but refused. */
export function bearerChallenge(error: UnauthenticatedError): string {
  return error.reason === "missing"
    ? 'Bearer realm="orders"'
    : 'Bearer realm="orders", error="invalid_token", error_description="The API key is unknown or revoked"';
}
