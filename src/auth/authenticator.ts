/**
 * Who is calling: the account of the API key in an `Authorization: Bearer` header, with a small
 * in-process cache in front of the key store. Both answers are cached for `cacheTtlMs`: a known key's
 * (so the store is not read on every request, and a revocation takes effect within that time) and an
 * unknown key's (so a flood of made-up keys costs MongoDB one read per distinct key per TTL, not one
 * per request). Store errors are never cached: they reach the caller, which answers 500/503, and the
 * next request asks the store again.
 */
import { hashApiKey, parseBearer } from "./api-keys.ts";

/** The one store method the authenticator uses (`MongoApiKeyStore` has it). */
export interface ApiKeyLookup {
  /** The active (not revoked) key the token names, or null. Throws when the store cannot answer. */
  findByToken(token: string): Promise<{ id: string; account: string } | null>;
}

export interface AuthenticatorOptions {
  /** How long an answer of the store is reused; the most a revocation waits to take effect. Default 5000. */
  cacheTtlMs?: number;
  /** The most answers kept; the oldest is evicted first. Default 10000. */
  maxEntries?: number;
  /** The clock, in milliseconds. Default `Date.now`. */
  now?: () => number;
}

export interface Caller {
  account: string;
  keyId: string;
}

export interface Authenticator {
  /** The caller, or null for a missing, malformed, unknown or revoked key. Rejects when the store fails. */
  authenticate(authorizationHeader: string | null): Promise<Caller | null>;
}

interface CacheEntry {
  caller: Caller | null;
  expiresAt: number;
}

export function createAuthenticator(store: ApiKeyLookup, options: AuthenticatorOptions = {}): Authenticator {
  const { cacheTtlMs = 5_000, maxEntries = 10_000, now = Date.now } = options;
  if (!(cacheTtlMs >= 0) || !Number.isInteger(maxEntries) || maxEntries < 0) {
    throw new RangeError("cacheTtlMs must be >= 0 and maxEntries a non-negative integer");
  }
  // Keyed by the token's hash, so that no token stays in memory longer than its request. A Map keeps
  // insertion order: its first entry is the oldest, the one evicted.
  const cache = new Map<string, CacheEntry>();
  // Concurrent requests with one key share one store read.
  const inFlight = new Map<string, Promise<Caller | null>>();

  const remember = (hash: string, caller: Caller | null) => {
    if (maxEntries === 0 || cacheTtlMs === 0) return;
    cache.delete(hash);
    while (cache.size >= maxEntries) {
      const oldest = cache.keys().next();
      if (oldest.done) break;
      cache.delete(oldest.value);
    }
    cache.set(hash, { caller, expiresAt: now() + cacheTtlMs });
  };

  const lookUp = (token: string, hash: string): Promise<Caller | null> => {
    const pending = (async () => {
      const key = await store.findByToken(token);
      // Frozen: one answer is shared by every request that the cache or the shared read serves.
      const caller = key && Object.freeze({ account: key.account, keyId: key.id });
      remember(hash, caller);
      return caller;
    })();
    inFlight.set(hash, pending);
    // Runs after the set above even when the store fails at once; a failure is not remembered.
    const settled = () => inFlight.delete(hash);
    pending.then(settled, settled);
    return pending;
  };

  return {
    async authenticate(authorizationHeader) {
      const token = parseBearer(authorizationHeader);
      if (token === null) return null;
      const hash = hashApiKey(token);
      const cached = cache.get(hash);
      if (cached) {
        if (now() < cached.expiresAt) return cached.caller;
        cache.delete(hash);
      }
      return inFlight.get(hash) ?? lookUp(token, hash);
    },
  };
}
