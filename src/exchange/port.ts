/**
 * The exchange as the placement actors see it: a remote venue that knows each order by its client order
 * id (our order id). Submitting a known id again is acknowledged again (`duplicate: true`) and never
 * placed twice; `lookup` tells whether an earlier, ambiguous attempt reached the venue.
 *
 * Failures are classified where they happen (domain/errors.ts): OrderPlacementError is a retryable
 * transport failure (what the circuit breaker counts); OrderRejectedByVenueError is final;
 * PlaceOrderArgumentError is a bug. Every call takes an AbortSignal so a timed-out call really stops.
 */
export interface ExchangeOrder {
  /** Our order id; the venue's idempotency key. */
  client_order_id: string;
  type: "market" | "limit";
  side: "buy" | "sell";
  instrument: string;
  limit_price_cents: number | null;
  quantity: number;
}

export interface VenueAck {
  venue_order_id: string;
  /** True when the venue already knew this client order id (a resubmission it absorbed). */
  duplicate: boolean;
}

export interface Exchange {
  placeOrder(order: ExchangeOrder, signal?: AbortSignal): Promise<VenueAck>;
  /** The venue's record of an order, or null when it never reached the venue. */
  lookup(clientOrderId: string, signal?: AbortSignal): Promise<VenueAck | null>;
}
