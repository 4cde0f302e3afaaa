/**
 * Telling a write the store refuses (for a reason of the write's own: its data) from a store that is
 * unwell (down, failing over, slow, out of disk). A writer retries the second kind in place for as long
 * as it takes; the first kind no wait will fix, and retried in place it would stall everything queued
 * behind it.
 *
 * Conservative on purpose: only a server's answer counts as a refusal, and not when it names a condition
 * of the store (a code or label of the retryable family, a write-concern failure). Network errors,
 * deadlines, pool and server-selection errors are never refusals. A code that is a refusal on MongoDB
 * can still mean an outage on FerretDB (it answers InternalError, code 1, both for a document
 * PostgreSQL cannot store and for a PostgreSQL that is down), so a caller must also see the store take
 * another write before it blames the data.
 */
import { MongoBulkWriteError, MongoServerError, MongoWriteConcernError } from "mongodb";

/**
 * Server codes that describe the store rather than the write: host unreachable or not found (6, 7),
 * lock busy (46), time limits (50, 262), write concern failed (64), network timeout (89), shutdown (91,
 * 11600), write conflict (112), read preference or majority not available (133, 134), stepped down
 * (189), no such transaction (251), socket exception (9001), not primary (10107, 13435, 13436),
 * interrupted (11601, 11602).
 */
const STORE_CONDITION_CODES = new Set([
  6, 7, 46, 50, 64, 89, 91, 112, 133, 134, 189, 251, 262, 9001, 10107, 11600, 11601, 11602, 13435, 13436,
]);
const STORE_CONDITION_LABELS = [
  "RetryableWriteError",
  "TransientTransactionError",
  "ResetPool",
  "SystemOverloadedError",
  "RetryableError",
] as const;

/** True when the store answered and refused the write for a reason no wait on the store fixes. */
export function isRefusedByStore(error: unknown): boolean {
  if (!(error instanceof MongoServerError) || error instanceof MongoWriteConcernError) return false;
  if (error instanceof MongoBulkWriteError && error.result?.getWriteConcernError()) return false;
  if (STORE_CONDITION_LABELS.some((label) => error.hasErrorLabel(label))) return false;
  return typeof error.code === "number" && !STORE_CONDITION_CODES.has(error.code);
}
