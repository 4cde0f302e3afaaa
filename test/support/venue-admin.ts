/**
 * The simulated venue's admin API, for tests, benchmarks and the chaos checker: its counters, and the
 * switches that make it fail, slow down or go away. Every call is bounded so a hung venue fails the
 * caller instead of hanging it.
 */
export interface VenueStats {
  orders: number;
  submissions: number;
  duplicates: number;
  failures: number;
  failure_rate: number;
  latency_ms: number;
  outage: boolean;
  /** The execution feed's counters (the `exchange` process has a feed; a bare venueRoutes has none). */
  execution_reports?: number;
  feed_connections?: number;
  session?: string;
  last_seq?: number;
}

/** The fill model and the gap injection of the venue's execution feed (POST /admin/feed). */
export interface FeedSettings {
  fills_per_order: number;
  fill_delay_ms: number;
  limit_unfilled_rate: number;
  /** Reports still to be left out of the live feed (a resend fills the hole). */
  drop_next: number;
}

/** GET /fills: each order's fill state as the venue counts it, to compare with the applied fills. */
export interface VenueFills {
  session: string;
  last_seq: number;
  orders: Record<string, { cum_qty: number; leaves_qty: number; exec_type_last: string | null }>;
}

const ADMIN_TIMEOUT_MS = 5_000;

/** The admin token of every simulated venue the harness starts (isolatedEnv sets EXCHANGE_ADMIN_TOKEN). */
export const VENUE_ADMIN_TOKEN = "test-venue-admin-token";
const adminHeaders = { "content-type": "application/json", authorization: `Bearer ${VENUE_ADMIN_TOKEN}` };

export async function venueStats(venue: { baseUrl: string }): Promise<VenueStats> {
  const response = await fetch(`${venue.baseUrl}/stats`, { signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS) });
  if (response.status !== 200) throw new Error(`venue /stats answered ${response.status}`);
  return (await response.json()) as VenueStats;
}

export async function configureVenue(
  venue: { baseUrl: string },
  patch: { failure_rate?: number; latency_ms?: number; outage?: boolean },
): Promise<void> {
  const response = await fetch(`${venue.baseUrl}/admin/settings`, {
    method: "POST",
    headers: adminHeaders,
    body: JSON.stringify(patch),
    signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS),
  });
  if (response.status !== 200) throw new Error(`venue /admin/settings answered ${response.status}`);
}

/** Forgets every record and zeroes the counters. */
export async function resetVenue(venue: { baseUrl: string }): Promise<void> {
  const response = await fetch(`${venue.baseUrl}/admin/reset`, {
    method: "POST",
    headers: adminHeaders,
    signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS),
  });
  if (response.status !== 200) throw new Error(`venue /admin/reset answered ${response.status}`);
}

async function postAdmin(venue: { baseUrl: string }, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${venue.baseUrl}/admin/${path}`, {
    method: "POST",
    headers: adminHeaders,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS),
  });
  if (response.status !== 200) {
    throw new Error(`venue /admin/${path} answered ${response.status}: ${await response.text()}`);
  }
  return response.json();
}

/** Changes the given feed settings (an empty patch reads them). */
export async function configureFeed(
  venue: { baseUrl: string },
  patch: Partial<FeedSettings> = {},
): Promise<FeedSettings> {
  return (await postAdmin(venue, "feed", patch)) as FeedSettings;
}

/** Closes every feed connection (the gateways reconnect themselves); returns how many were closed. */
export async function disconnectFeed(venue: { baseUrl: string }): Promise<number> {
  return ((await postAdmin(venue, "feed/disconnect")) as { closed: number }).closed;
}

/**
 * Schedules up to `reports` one-share trades over the open orders at `per_second`; returns how many were
 * scheduled (fewer when the open quantity runs out).
 */
export async function burstFeed(
  venue: { baseUrl: string },
  burst: { reports: number; per_second: number },
): Promise<number> {
  return ((await postAdmin(venue, "feed/burst", burst)) as { scheduled: number }).scheduled;
}

export async function venueFills(venue: { baseUrl: string }): Promise<VenueFills> {
  const response = await fetch(`${venue.baseUrl}/fills`, { signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS) });
  if (response.status !== 200) throw new Error(`venue /fills answered ${response.status}`);
  return (await response.json()) as VenueFills;
}
