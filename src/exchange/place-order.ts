/**
 * The starter's `place_order(order)` in TypeScript, as the in-process exchange that the actors use when
 * EXCHANGE_URL is unset. Its model (venue.ts): no order -> PlaceOrderArgumentError; with probability
 * `failureRate` an OrderPlacementError ("Failed to place order at stock exchange. Connection not
 * available") decided before the venue records anything; otherwise the order is recorded once per client
 * order id halfway through `latencyMs`, so an abort in the first half leaves nothing behind and an abort
 * in the second half leaves a recorded order without an acknowledgement (what `lookup` is for).
 */
import type { Exchange, ExchangeOrder, VenueAck } from "./port.ts";
import { createVenue, type VenueOptions, type VenueStats } from "./venue.ts";

export type { VenueStats } from "./venue.ts";

/** The starter's defaults, also the defaults of EXCHANGE_FAILURE_RATE and EXCHANGE_LATENCY_MS. */
export const DEFAULT_FAILURE_RATE = 0.1;
export const DEFAULT_LATENCY_MS = 500;

export type InProcessExchange = Exchange & { stats(): VenueStats };

export function createInProcessExchange(options: VenueOptions): InProcessExchange {
  const venue = createVenue(options);
  return {
    placeOrder: (order, signal) => venue.submit(order, signal),
    async lookup(clientOrderId, signal) {
      signal?.throwIfAborted();
      return venue.lookup(clientOrderId);
    },
    stats: () => venue.stats(),
  };
}

let starterVenue: ReturnType<typeof createVenue> | undefined;

/** `place_order(order)` with the starter's defaults (10 % failures, 500 ms), one venue per process. */
export function placeOrder(order?: ExchangeOrder | null, signal?: AbortSignal): Promise<VenueAck> {
  starterVenue ??= createVenue({ failureRate: DEFAULT_FAILURE_RATE, latencyMs: DEFAULT_LATENCY_MS });
  return starterVenue.submit(order, signal);
}
