/**
 * The circuit breaker in front of the exchange (opossum). Each call gets its own AbortController that
 * fires on the attempt timeout or on shutdown, so a timed-out call really stops. Only transport
 * failures count towards opening (a venue's business rejection says nothing about its health).
 */
import CircuitBreaker from "opossum";
import { isRetryable, OrderPlacementError } from "../../src/domain/errors.ts";
import type { Exchange, ExchangeOrder, VenueAck } from "../../src/exchange/port.ts";

export type BreakerState = "closed" | "half-open" | "open";

export interface ExchangeBreakerOptions {
  timeoutMs: number;
  errorThresholdPercent: number;
  volumeThreshold: number;
  resetTimeoutMs: number;
  onStateChange?(state: BreakerState): void;
}

export class PlacementTimeoutError extends OrderPlacementError {
  override readonly code = "ORDER_PLACEMENT_TIMEOUT" as "ORDER_PLACEMENT_FAILED";
  constructor(timeoutMs: number) {
    super(
      `placement attempt timed out after ${timeoutMs} ms (outcome unknown; the venue is asked before a resubmission)`,
    );
    this.name = "PlacementTimeoutError";
  }
}

export class BreakerOpenError extends OrderPlacementError {
  constructor() {
    super("circuit breaker towards the exchange is open");
    this.name = "BreakerOpenError";
  }
}

export class ExchangeBreaker {
  private readonly breaker: CircuitBreaker<[ExchangeOrder, AbortSignal], VenueAck>;
  private trialsInFlight = 0;

  constructor(
    private readonly exchange: Exchange,
    private readonly options: ExchangeBreakerOptions,
  ) {
    this.breaker = new CircuitBreaker(
      (order: ExchangeOrder, signal: AbortSignal) => this.exchange.placeOrder(order, signal),
      {
        timeout: false,
        errorThresholdPercentage: options.errorThresholdPercent,
        volumeThreshold: options.volumeThreshold,
        resetTimeout: options.resetTimeoutMs,
        rollingCountTimeout: 10_000,
        rollingCountBuckets: 10,
        // Latency percentiles are not used (the service's histograms have them), and opossum builds
        // them by concatenating and sorting every call's latency of the window on each failure and
        // snapshot: 3-4% of an actor's CPU at 10% venue failures.
        rollingPercentilesEnabled: false,
        enableSnapshots: false,
        errorFilter: (error: unknown) => !isRetryable(error),
      },
    );
    this.breaker.on("open", () => options.onStateChange?.("open"));
    this.breaker.on("halfOpen", () => options.onStateChange?.("half-open"));
    this.breaker.on("close", () => options.onStateChange?.("closed"));
  }

  get state(): BreakerState {
    if (this.breaker.opened) return "open";
    if (this.breaker.halfOpen) return "half-open";
    return "closed";
  }

  /** How many new placements may start now: none while open, one trial while half-open. */
  capacity(): number {
    const state = this.state;
    if (state === "open") return 0;
    if (state === "half-open") return this.trialsInFlight === 0 ? 1 : 0;
    return Number.POSITIVE_INFINITY;
  }

  async place(order: ExchangeOrder, shutdown: AbortSignal): Promise<VenueAck> {
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new PlacementTimeoutError(this.options.timeoutMs)),
      this.options.timeoutMs,
    );
    const onShutdown = () => controller.abort(shutdown.reason);
    // An already-aborted signal never fires "abort" again: a call started during shutdown stops at once.
    if (shutdown.aborted) onShutdown();
    else shutdown.addEventListener("abort", onShutdown, { once: true });
    const trial = this.state === "half-open";
    if (trial) this.trialsInFlight += 1;
    try {
      return await Promise.race([
        this.breaker.fire(order, controller.signal),
        // An exchange that ignores its signal must not hold the actor past the timeout.
        new Promise<never>((_, reject) => {
          if (controller.signal.aborted) reject(controller.signal.reason);
          controller.signal.addEventListener("abort", () => reject(controller.signal.reason), { once: true });
        }),
      ]);
    } catch (error) {
      if ((error as { code?: string }).code === "EOPENBREAKER") throw new BreakerOpenError();
      throw error;
    } finally {
      clearTimeout(timer);
      shutdown.removeEventListener("abort", onShutdown);
      if (trial) this.trialsInFlight -= 1;
    }
  }

  shutdown(): void {
    this.breaker.shutdown();
  }
}
