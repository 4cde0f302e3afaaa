/**
 * API keys (collection `api_keys`): `{ _id: id, account, label, hash, created_at, revoked_at }`. Only the
 * SHA-256 of a token is stored (src/auth/api-keys.ts); the token leaves `create` once and is never
 * written anywhere. Keys are revoked, never deleted, so that a listing keeps their history.
 */
import { type Collection, type Db, MongoServerError } from "mongodb";
import {
  generateApiKey,
  hashApiKey,
  InvalidAccountError,
  InvalidLabelError,
  isValidAccount,
  isValidLabel,
} from "../../auth/api-keys.ts";
import {
  boundedInFlight,
  DUPLICATE_KEY,
  durableWrite,
  ensureIndexes,
  type InFlightGate,
  operationDeadline,
} from "./client.ts";

interface ApiKeyDocument {
  _id: string;
  account: string;
  label: string;
  hash: string;
  created_at: Date;
  revoked_at: Date | null;
}

/** A key as listings show it: never its hash, never its token. */
export interface ApiKeyRecord {
  id: string;
  account: string;
  label: string;
  createdAt: Date;
  revokedAt: Date | null;
}

export type RevokeResult = "revoked" | "already" | "missing";

export interface ApiKeyStoreSettings {
  timeoutMs: number;
  /** Bound on this process's operations waiting on MongoDB (backpressure); unbounded when absent. */
  gate?: InFlightGate;
  /** The clock of `created_at` and `revoked_at` (default: the system clock). */
  now?: () => Date;
}

/** A fresh random id that collides with an existing one (48 bits) is drawn again, this many times. */
const CREATE_ATTEMPTS = 3;

export class MongoApiKeyStore {
  readonly collection: Collection<ApiKeyDocument>;
  private readonly gate: InFlightGate;
  private readonly now: () => Date;

  constructor(
    private readonly db: Db,
    private readonly settings: ApiKeyStoreSettings,
    collectionName = "api_keys",
  ) {
    this.collection = db.collection<ApiKeyDocument>(collectionName);
    this.gate = settings.gate ?? boundedInFlight(Number.POSITIVE_INFINITY);
    this.now = settings.now ?? (() => new Date());
  }

  private durable() {
    return durableWrite(this.settings.timeoutMs);
  }

  private deadline() {
    return operationDeadline(this.settings.timeoutMs);
  }

  /**
   * The unique index on `hash` makes every token name at most one key (FerretDB v1.24 enforces unique
   * indexes too); the index on `account` serves `list(account)`.
   */
  async ensureIndexes(): Promise<void> {
    await ensureIndexes(this.db, this.collection, [
      { key: { hash: 1 }, name: "hash_unique", unique: true },
      { key: { account: 1 }, name: "account" },
    ]);
  }

  /** A new active key for `account`; the token is returned here and nowhere else. */
  async create(input: { account: string; label?: string }): Promise<{ key: ApiKeyRecord; token: string }> {
    const { account } = input;
    const label = input.label ?? "";
    if (!isValidAccount(account)) throw new InvalidAccountError(account);
    if (!isValidLabel(label)) throw new InvalidLabelError();
    for (let attempt = 1; ; attempt += 1) {
      const { id, token } = generateApiKey();
      const document: ApiKeyDocument = {
        _id: id,
        account,
        label,
        hash: hashApiKey(token),
        created_at: this.now(),
        revoked_at: null,
      };
      try {
        await this.gate.run(() => this.collection.insertOne(document, this.durable()));
        return { key: toRecord(document), token };
      } catch (error) {
        const duplicate = error instanceof MongoServerError && error.code === DUPLICATE_KEY;
        if (!duplicate || attempt >= CREATE_ATTEMPTS) throw error;
      }
    }
  }

  /** Keys, newest first; those of `account` only when it is given. */
  async list(account?: string): Promise<ApiKeyRecord[]> {
    const documents = await this.gate.run(() =>
      this.collection
        .find(account === undefined ? {} : { account }, {
          projection: { hash: 0 },
          sort: { created_at: -1, _id: 1 },
          ...this.deadline(),
        })
        .toArray(),
    );
    return documents.map(toRecord);
  }

  /**
   * Sets `revoked_at` once: the update is conditional on `revoked_at: null`, so a second revocation
   * keeps the first time. FerretDB's conditional updates are not atomic under concurrency (docs/TESTING.md),
   * so two concurrent revocations there may both answer "revoked"; the key is revoked either way.
   */
  async revoke(id: string): Promise<RevokeResult> {
    const result = await this.gate.run(() =>
      this.collection.updateOne(
        { _id: id, revoked_at: null },
        { $set: { revoked_at: this.now() } },
        this.durable(),
      ),
    );
    if (result.matchedCount === 1) return "revoked";
    const existing = await this.gate.run(() =>
      this.collection.findOne({ _id: id }, { projection: { _id: 1 }, ...this.deadline() }),
    );
    return existing ? "already" : "missing";
  }

  /**
   * The active key the token names, or null (unknown or revoked). One equality filter on `hash`
   * (FerretDB passes only equality filters down to its backend; the unique index serves it on MongoDB);
   * revocation is checked here rather than in the filter for the same reason.
   */
  async findByToken(token: string): Promise<{ id: string; account: string } | null> {
    const document = await this.gate.run(() =>
      this.collection.findOne(
        { hash: hashApiKey(token) },
        { projection: { account: 1, revoked_at: 1 }, ...this.deadline() },
      ),
    );
    if (!document || document.revoked_at) return null;
    return { id: document._id, account: document.account };
  }
}

function toRecord(document: Omit<ApiKeyDocument, "hash">): ApiKeyRecord {
  return {
    id: document._id,
    account: document.account,
    label: document.label,
    createdAt: document.created_at,
    revokedAt: document.revoked_at ?? null,
  };
}
