/**
 * The outcome of the last `orders reconcile` run, kept in MongoDB so that the service's own monitoring
 * sees it: the command writes it, and the actor process that runs the end-to-end monitor exports it
 * as gauges (orders_reconcile_*), which the alerts read. One document, replaced by each run; the
 * history is in the runs' own output (the CronJob's Job logs).
 */
import type { Collection, Db } from "mongodb";
import { durableWrite, operationDeadline } from "./client.ts";

export interface ReconciliationOutcome {
  at: Date;
  /** Orders created since then were checked. */
  since: Date;
  /** Orders checked, by kind (withdrawn, rejected, parked, placed). */
  checked: Record<string, number>;
  /** Kinds with more orders than the run's limit: some were not asked about. */
  truncated: string[];
  /** Orders the venue has although MongoDB says they were not placed. */
  findings: number;
  /** Their ids (the first 100). */
  finding_order_ids: string[];
  /** Look-ups that failed: the check was incomplete. */
  lookups_failed: number;
}

const LAST = "last";
const MAX_FINDING_IDS = 100;

export class MongoReconciliationStore {
  private readonly collection: Collection<ReconciliationOutcome & { _id: string }>;

  constructor(
    db: Db,
    private readonly timeoutMs: number,
  ) {
    this.collection = db.collection("reconciliations");
  }

  async record(outcome: ReconciliationOutcome): Promise<void> {
    await this.collection.replaceOne(
      { _id: LAST },
      { ...outcome, finding_order_ids: outcome.finding_order_ids.slice(0, MAX_FINDING_IDS) },
      { upsert: true, ...durableWrite(this.timeoutMs) },
    );
  }

  /** The last run's outcome, or null when none ran. */
  async last(): Promise<ReconciliationOutcome | null> {
    const found = await this.collection.findOne({ _id: LAST }, operationDeadline(this.timeoutMs));
    if (!found) return null;
    const { _id, ...outcome } = found;
    return outcome;
  }
}
