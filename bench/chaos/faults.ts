/**
 * Fault injection for the chaos run: one fault at a time, at random every few seconds, drawn from a
 * shuffled deck of every kind (so that a short run still meets each kind), victims and durations from
 * the seeded PRNG. Each fault ends with the system whole again (the victim restarted or resumed), so
 * that the next one starts from a known state; its window [startMs, endMs] is what the latency report
 * uses to tell "during a venue outage" from "no fault".
 */
// configureVenue straight from the venue's admin client, not through cluster.ts (which loads the whole
// harness): the report and the pure checker tests import FAULT_KINDS from here.
import { configureVenue } from "../../test/support/venue-admin.ts";
import type { Cluster, Service } from "./cluster.ts";
import { metricSum } from "./metrics.ts";
import type { Rng } from "./prng.ts";

export const FAULT_KINDS = [
  "actor-kill",
  "actor-stop",
  "redis-restart-empty",
  "mongo-restart",
  "mongo-stall",
  "venue-outage",
  "api-kill",
  "gateway-kill",
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface FaultRecord {
  kind: FaultKind;
  target: string;
  /** ms after the load started. */
  startMs: number;
  endMs: number;
  detail: Record<string, number | string | boolean>;
  error?: string;
}

export interface FaultContext {
  cluster: Cluster;
  rng: Rng;
  /** ms since the load started. */
  clock: () => number;
  log: (line: string) => void;
  claimTimeoutMs: number;
  /** POST /orders requests on the wire right now (to kill the api mid-request). */
  inFlight: () => number;
  /** The fault in progress, for progress lines. */
  active?: FaultKind | null;
}

type Detail = FaultRecord["detail"];

/** Keeps a killed victim down for a random time in [minMs, maxMs], recorded as `down_ms`. */
async function stayDown(rng: Rng, detail: Detail, minMs: number, maxMs: number): Promise<void> {
  const downMs = rng.int(minMs, maxMs);
  detail.down_ms = downMs;
  await Bun.sleep(downMs);
}

const FAULTS: Record<FaultKind, (ctx: FaultContext, detail: Detail) => Promise<string>> = {
  async "actor-kill"({ cluster, rng }, detail) {
    const actor = rng.pick(cluster.actors);
    detail.pid = actor.pid ?? 0;
    await actor.kill();
    await stayDown(rng, detail, 300, 1_500);
    await actor.start();
    return actor.name;
  },
  async "actor-stop"({ cluster, rng, claimTimeoutMs }, detail) {
    const actor = rng.pick(cluster.actors);
    const pausedMs = claimTimeoutMs + rng.int(500, 2_000);
    detail.pid = actor.pid ?? 0;
    detail.paused_ms = pausedMs;
    actor.signal("SIGSTOP");
    try {
      await Bun.sleep(pausedMs);
    } finally {
      actor.signal("SIGCONT");
    }
    return actor.name;
  },
  async "redis-restart-empty"({ cluster, rng }, detail) {
    const redis = cluster.servers.redis;
    await redis.kill();
    await stayDown(rng, detail, 300, 1_500);
    await redis.restart({ empty: true });
    return redis.kind;
  },
  async "mongo-restart"({ cluster, rng }, detail) {
    const mongo = cluster.servers.mongo;
    await mongo.kill();
    await stayDown(rng, detail, 300, 1_500);
    await mongo.restart();
    return mongo.kind;
  },
  /**
   * The store stops answering (SIGSTOP) past INTAKE_SHED_AFTER_MS: intake sheds (503, nothing stored)
   * around one trial order at a time, the requests already at the store end as before (201 or the 500).
   */
  async "mongo-stall"({ cluster, rng }, detail) {
    const mongo = cluster.servers.mongo;
    const stalledMs = rng.int(2_500, 6_000);
    detail.stalled_ms = stalledMs;
    mongo.pause();
    try {
      await Bun.sleep(stalledMs);
    } finally {
      mongo.resume();
    }
    return mongo.kind;
  },
  async "venue-outage"({ cluster, rng }, detail) {
    const outageMs = rng.int(2_500, 5_000);
    detail.outage_ms = outageMs;
    await configureVenue(cluster.venue, { outage: true });
    try {
      await Bun.sleep(outageMs);
    } finally {
      await configureVenue(cluster.venue, { outage: false });
    }
    return "exchange";
  },
  async "api-kill"({ cluster, rng, inFlight }, detail) {
    // Mid-request: wait (briefly) for a request on the wire.
    const deadline = Date.now() + 2_000;
    while (inFlight() === 0 && Date.now() < deadline) await Bun.sleep(5);
    detail.in_flight_at_kill = inFlight();
    detail.pid = cluster.api.pid ?? 0;
    await cluster.api.kill();
    await stayDown(rng, detail, 200, 1_000);
    await cluster.api.start();
    return "api";
  },
  async "gateway-kill"({ cluster, rng }, detail) {
    if (cluster.gateways.length === 0) throw new Error("the cluster runs no gateway");
    // Drawn whatever happens, so that the seeded draws of later faults do not depend on timing.
    const fallback = rng.pick(cluster.gateways);
    // The standby's takeover is the point; with no gateway active, any one is still a fault.
    const active = await activeGateway(cluster.gateways);
    const gateway = active ?? fallback;
    detail.was_active = active !== null;
    detail.pid = gateway.pid ?? 0;
    await gateway.kill();
    await stayDown(rng, detail, 300, 1_500);
    await gateway.start();
    return gateway.name;
  },
};

/** The gateway reading the venue feed now, waiting briefly: a takeover may be under way. */
async function activeGateway(gateways: readonly Service[]): Promise<Service | null> {
  const deadline = Date.now() + 5_000;
  do {
    for (const gateway of gateways)
      if ((await metricSum(gateway, "executions_gateway_active").catch(() => null)) === 1) return gateway;
    await Bun.sleep(100);
  } while (Date.now() < deadline);
  return null;
}

/** Brings every piece back after a failed fault (a restart that did not come up, say). */
async function repair(cluster: Cluster, log: (line: string) => void): Promise<void> {
  for (const service of cluster.services) service.signal("SIGCONT");
  await configureVenue(cluster.venue, { outage: false }).catch(() => {});
  for (const service of cluster.services) {
    if (service.running) continue;
    log(`repair: starting ${service.name} again`);
    await service.start();
  }
}

export interface FaultPlanOptions {
  /** Faults start only before this (ms after the load started). */
  untilMs: number;
  /** Quiet time before the first fault and between two faults, [min, max] ms. */
  gapMs: [number, number];
  kinds: readonly FaultKind[];
  /** Checked between faults; true stops early. */
  stopped?: () => boolean;
}

export async function runFaults(ctx: FaultContext, options: FaultPlanOptions): Promise<FaultRecord[]> {
  const records: FaultRecord[] = [];
  let deck: FaultKind[] = [];
  const quiet = () => Bun.sleep(ctx.rng.int(options.gapMs[0], options.gapMs[1]));
  await quiet();
  while (ctx.clock() < options.untilMs - 1_000 && !options.stopped?.()) {
    if (deck.length === 0) deck = ctx.rng.shuffle(options.kinds);
    const kind = deck.shift() as FaultKind;
    const detail: Detail = {};
    const record: FaultRecord = { kind, target: "", startMs: ctx.clock(), endMs: 0, detail };
    ctx.log(`fault ${records.length + 1}: ${kind} ...`);
    ctx.active = kind;
    try {
      record.target = await FAULTS[kind](ctx, detail);
    } catch (error) {
      record.error = String((error as Error)?.message ?? error).slice(0, 500);
      ctx.log(`fault ${kind} failed: ${record.error}`);
      await repair(ctx.cluster, ctx.log);
    }
    record.endMs = ctx.clock();
    ctx.active = null;
    records.push(record);
    const details = Object.entries(detail)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    ctx.log(
      `fault ${records.length}: ${kind} on ${record.target || "?"} done in ${((record.endMs - record.startMs) / 1000).toFixed(1)} s ${details}`,
    );
    await quiet();
  }
  await repair(ctx.cluster, ctx.log);
  return records;
}
