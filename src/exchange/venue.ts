/**
 * The simulated venue: the failure and latency model of the starter's `place_order`, plus what a real
 * venue adds, a record of every client order id it accepted. The in-process exchange (place-order.ts)
 * and the `exchange` process (venue-routes.ts) share this one core, so both behave alike. It is kept
 * free of HTTP so that the in-process exchange does not load Elysia or the wire schemas.
 *
 * One submission, in time order:
 * 1. no order -> PlaceOrderArgumentError (a bug, never retried);
 * 2. outage switched on -> OrderPlacementError at once (nobody answers, so there is nothing to wait for);
 * 3. one draw of `random()` decides whether the connection fails; a failing submission still takes the
 *    full latency and never reaches the record, so retrying it is always safe;
 * 4. the request leg (the first half of the latency), then the record point: an unknown id is recorded
 *    once, a known id is counted as a duplicate and acknowledged with its first venue_order_id;
 * 5. the answer leg (the second half). An abort there leaves the order recorded while the caller sees
 *    no acknowledgement: the ambiguous outcome that `lookup` resolves before a retry.
 * An abort before the record point leaves nothing behind.
 */
import { OrderPlacementError, PlaceOrderArgumentError } from "../domain/errors.ts";
import type { ExchangeOrder, VenueAck } from "./port.ts";

export interface VenueStats {
  /** Distinct client order ids recorded. */
  orders: number;
  /** Calls with an order that were not aborted before they started, whatever their outcome. */
  submissions: number;
  /** Submissions of an already recorded client order id, absorbed without placing again. */
  duplicates: number;
  /** Simulated connection failures, outage included. */
  failures: number;
}

export interface VenueSettings {
  /** Probability in [0, 1] that one submission fails. */
  failureRate: number;
  /** Duration of one submission in milliseconds. */
  latencyMs: number;
  /** When on, every submission fails at once with a transport failure (HTTP 503). */
  outage: boolean;
}

export interface VenueOptions {
  /** Probability in [0, 1] that one submission fails; EXCHANGE_FAILURE_RATE, default 0.1. */
  failureRate: number;
  /** Duration of one submission in ms; EXCHANGE_LATENCY_MS, default 500. */
  latencyMs: number;
  /** Uniform numbers in [0, 1), drawn once per submission; default Math.random. */
  random?: () => number;
  /** Waits `ms`, rejecting with the signal's reason when it aborts; default abortableSleep. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /**
   * Called once per client order id, when the venue records it (never for a duplicate): the `exchange`
   * process starts its execution reports here (execution-feed.ts). Default: nothing.
   */
  onAcknowledged?: (order: ExchangeOrder, venueOrderId: string) => void;
}

export interface Venue {
  /** Rejects with PlaceOrderArgumentError, OrderPlacementError or the signal's abort reason. */
  submit(order: ExchangeOrder | null | undefined, signal?: AbortSignal): Promise<VenueAck>;
  /** The venue's record of a client order id, or null; immediate (no simulated latency). */
  lookup(clientOrderId: string): VenueAck | null;
  /** Changes the given settings for every later submission and returns all settings. */
  configure(patch: Partial<VenueSettings>): VenueSettings;
  settings(): VenueSettings;
  stats(): VenueStats;
  /** Forgets every record and zeroes the stats (between benchmark runs). */
  reset(): void;
}

export const OUTAGE_MESSAGE = "Failed to place order at stock exchange. Venue unavailable (outage)";

/** Fraction of the latency spent before the record point; the rest is the acknowledgement travelling back. */
const RECORD_POINT = 0.5;

export function createVenue(options: VenueOptions): Venue {
  const random = options.random ?? Math.random;
  const sleep = options.sleep ?? abortableSleep;
  const current: VenueSettings = { failureRate: 0, latencyMs: 0, outage: false };
  const records = new Map<string, string>();
  let counters = { submissions: 0, duplicates: 0, failures: 0 };

  const configure = (patch: Partial<VenueSettings>): VenueSettings => {
    if (patch.failureRate !== undefined) {
      if (!(patch.failureRate >= 0 && patch.failureRate <= 1)) {
        throw new RangeError(`failureRate must be within [0, 1], got ${patch.failureRate}`);
      }
      current.failureRate = patch.failureRate;
    }
    if (patch.latencyMs !== undefined) {
      if (!(Number.isFinite(patch.latencyMs) && patch.latencyMs >= 0)) {
        throw new RangeError(`latencyMs must be a finite number >= 0, got ${patch.latencyMs}`);
      }
      current.latencyMs = patch.latencyMs;
    }
    if (patch.outage !== undefined) current.outage = patch.outage;
    return { ...current };
  };
  configure({ failureRate: options.failureRate, latencyMs: options.latencyMs });

  // Each leg re-checks the signal because an injected sleep may ignore it.
  const wait = async (ms: number, signal?: AbortSignal) => {
    await sleep(ms, signal);
    signal?.throwIfAborted();
  };

  return {
    async submit(order, signal) {
      if (!order) throw new PlaceOrderArgumentError();
      signal?.throwIfAborted();
      counters.submissions++;
      if (current.outage) {
        counters.failures++;
        throw new OrderPlacementError(OUTAGE_MESSAGE);
      }
      // Settings are read once so that a change made mid-call cannot split one submission's model.
      const { latencyMs, failureRate } = current;
      if (random() < failureRate) {
        await wait(latencyMs, signal);
        counters.failures++;
        throw new OrderPlacementError();
      }
      const requestLeg = Math.round(latencyMs * RECORD_POINT);
      await wait(requestLeg, signal);
      const known = records.get(order.client_order_id);
      let ack: VenueAck;
      if (known === undefined) {
        const venueOrderId = crypto.randomUUID();
        records.set(order.client_order_id, venueOrderId);
        options.onAcknowledged?.(order, venueOrderId);
        ack = { venue_order_id: venueOrderId, duplicate: false };
      } else {
        counters.duplicates++;
        ack = { venue_order_id: known, duplicate: true };
      }
      await wait(latencyMs - requestLeg, signal);
      return ack;
    },
    lookup(clientOrderId) {
      const venueOrderId = records.get(clientOrderId);
      return venueOrderId === undefined ? null : { venue_order_id: venueOrderId, duplicate: false };
    },
    configure,
    settings: () => ({ ...current }),
    stats: () => ({ orders: records.size, ...counters }),
    reset() {
      records.clear();
      counters = { submissions: 0, duplicates: 0, failures: 0 };
    },
  };
}

/** setTimeout as a promise that rejects with the signal's reason (and clears its timer) on abort. */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}
