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
