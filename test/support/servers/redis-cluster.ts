/**
 * A real Redis Cluster on loopback: 3 masters and 3 replicas by default, each a redis-server of the
 * harness (own temporary directory, watchdog) with cluster mode on and an explicit bus port, joined
 * by `redis-cli --cluster create`. A master can be killed (-9) and its replica's promotion waited
 * for; any node can be paused and resumed; stop() kills every node and deletes the directories.
 */

import { freePort, waitFor } from "../wait-for.ts";
import { tempDir } from "./owned-server.ts";
import { RedisServer, redisCommand, redisCommands } from "./redis.ts";

const HOST = "127.0.0.1";
/** How long a node may not answer before the others mark it failed (and a replica takes over). */
export const CLUSTER_NODE_TIMEOUT_MS = 2_000;

class RedisClusterNode extends RedisServer {
  override readonly kind = "redis-cluster-node";
}

/** One line of CLUSTER NODES. */
export interface ClusterNode {
  id: string;
  /** host:port */
  address: string;
  port: number;
  flags: string[];
  /** Master's id for a replica, else undefined. */
  masterId: string | undefined;
  connected: boolean;
  /** Slot ranges ("0-5460"); empty for a replica. */
  slots: string[];
}

export class RedisCluster {
  /** Every node as host:port, masters and replicas. */
  readonly nodes: string[];
  /** The nodes as one "host:port,host:port,..." string (REDIS_CLUSTER_NODES). */
  readonly seeds: string;
  private readonly down = new Set<number>();
  private readonly paused = new Set<number>();
  private readonly killedMasters = new Map<number, { id: string; replicas: number[]; at: number }>();

  constructor(
    private readonly servers: Map<number, RedisServer>,
    /** The nodes' data directories (deleted by stop()). */
    readonly dirs: string[],
  ) {
    this.nodes = [...servers.keys()].map((port) => `${HOST}:${port}`);
    this.seeds = this.nodes.join(",");
  }

  /** The nodes that are neither killed nor paused. */
  private get reachable(): number[] {
    return [...this.servers.keys()].filter((port) => !this.down.has(port) && !this.paused.has(port));
  }

  /** CLUSTER NODES as seen by `port` (default: the first reachable node). */
  async clusterNodes(port = this.reachable[0]): Promise<ClusterNode[]> {
    if (port === undefined) throw new Error("no reachable cluster node");
    const text = String(await redisCommand(port, "CLUSTER", "NODES"));
    return text
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const [id = "", address = "", flags = "", master = "-", , , , link = "", ...slots] = line.split(" ");
        const hostPort = address.split("@")[0] ?? "";
        return {
          id,
          address: hostPort,
          port: Number(hostPort.split(":").at(-1)),
          flags: flags.split(","),
          masterId: master === "-" ? undefined : master,
          connected: link === "connected",
          slots: slots.filter((s) => !s.startsWith("[")),
        };
      });
  }

  /** The masters serving slots, as host:port, in the view of a reachable node. */
  async masters(): Promise<string[]> {
    const nodes = await this.clusterNodes();
    return nodes
      .filter((n) => n.flags.includes("master") && !failed(n) && n.slots.length > 0)
      .map((n) => n.address)
      .sort();
  }

  /** The replicas (host:port) of the master on `port`. */
  async replicasOf(port: number): Promise<string[]> {
    const nodes = await this.clusterNodes();
    const master = nodes.find((n) => n.port === port);
    if (!master) throw new Error(`no cluster node on port ${port}`);
    return nodes.filter((n) => n.masterId === master.id).map((n) => n.address);
  }

  /** SIGKILLs the master on `port` (it stays down until restart(port)). */
  async killMaster(port: number): Promise<void> {
    const nodes = await this.clusterNodes();
    const master = nodes.find((n) => n.port === port);
    if (!master?.flags.includes("master")) throw new Error(`${HOST}:${port} is not a master`);
    const replicas = nodes.filter((n) => n.masterId === master.id).map((n) => n.port);
    await this.server(port).kill();
    this.down.add(port);
    this.killedMasters.set(port, { id: master.id, replicas, at: performance.now() });
  }

  /**
   * Waits until a replica of the master killed on `port` is a master serving its slots and every
   * reachable node reports cluster_state:ok. Returns the new master and the time since the kill.
   */
  async waitForFailover(port: number, timeoutMs = 30_000): Promise<{ master: string; ms: number }> {
    const killed = this.killedMasters.get(port);
    if (!killed) throw new Error(`no master was killed on port ${port}`);
    const master = await waitFor(
      async () => {
        for (const replica of killed.replicas.filter((p) => this.reachable.includes(p))) {
          const self = (await this.clusterNodes(replica)).find((n) => n.flags.includes("myself"));
          if (self?.flags.includes("master") && self.slots.length > 0) return self.address;
        }
        return undefined;
      },
      { timeoutMs, intervalMs: 50, message: `a replica of ${HOST}:${port} promoted` },
    );
    await this.waitForState(timeoutMs);
    return { master, ms: Math.round(performance.now() - killed.at) };
  }

  /** Waits until every reachable node reports cluster_state:ok and knows no failed master with slots. */
  async waitForState(timeoutMs = 30_000): Promise<void> {
    await waitFor(
      async () => {
        for (const port of this.reachable) {
          const info = String(await redisCommand(port, "CLUSTER", "INFO"));
          if (!info.includes("cluster_state:ok")) return false;
        }
        return true;
      },
      { timeoutMs, intervalMs: 50, message: "cluster_state:ok on every reachable node" },
    );
  }

  /** Starts a killed node again on its port and data (it rejoins, as a replica if it was replaced). */
  async restart(port: number): Promise<void> {
    await this.server(port).restart();
    this.down.delete(port);
    this.killedMasters.delete(port);
  }

  pause(port: number): void {
    this.server(port).pause();
    this.paused.add(port);
  }

  resume(port: number): void {
    this.server(port).resume();
    this.paused.delete(port);
  }

  async stop(): Promise<void> {
    await Promise.allSettled([...this.servers.values()].map((s) => s.stop()));
  }

  private server(port: number): RedisServer {
    const server = this.servers.get(port);
    if (!server) throw new Error(`no cluster node on port ${port}`);
    return server;
  }
}

function failed(node: ClusterNode): boolean {
  return node.flags.includes("fail") || node.flags.includes("fail?");
}

/** Distinct free ports (the nodes' client ports and their cluster bus ports). */
async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

/**
 * Starts `masters` masters with `replicasPerMaster` replicas each, creates the cluster and waits until
 * every node reports cluster_state:ok and every replica is in sync with its master.
 */
export async function startRedisCluster(
  options: { masters?: number; replicasPerMaster?: number } = {},
): Promise<RedisCluster> {
  const { masters = 3, replicasPerMaster = 1 } = options;
  const count = masters * (1 + replicasPerMaster);
  const ports = await freePorts(count * 2);
  const servers = new Map<number, RedisServer>();
  const dirs: string[] = [];
  for (let i = 0; i < count; i++) {
    const port = ports[i] as number;
    const dir = tempDir("redis-cluster");
    dirs.push(dir);
    servers.set(
      port,
      new RedisClusterNode(port, dir, [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        `${dir}/nodes.conf`,
        "--cluster-node-timeout",
        String(CLUSTER_NODE_TIMEOUT_MS),
        // Explicit bus ports: port + 10000 (the default) may be taken or past 65535.
        "--cluster-port",
        String(ports[count + i]),
        // A replica's first sync starts at once (the default waits 5 s for more replicas to join).
        "--repl-diskless-sync-delay",
        "0",
      ]),
    );
  }
  const cluster = new RedisCluster(servers, dirs);
  try {
    await Promise.all([...servers.values()].map((s) => s.start()));
    const create = Bun.spawn(
      [
        "redis-cli",
        "--cluster",
        "create",
        ...cluster.nodes,
        "--cluster-replicas",
        String(replicasPerMaster),
        "--cluster-yes",
      ],
      { stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 },
    );
    const [code, out, err] = await Promise.all([
      create.exited,
      new Response(create.stdout).text(),
      new Response(create.stderr).text(),
    ]);
    if (code !== 0) throw new Error(`redis-cli --cluster create failed (${code}):\n${out}\n${err}`);
    await cluster.waitForState();
    await waitFor(
      async () => {
        const nodes = await cluster.clusterNodes();
        if (nodes.length !== count || nodes.some((n) => !n.connected || failed(n))) return false;
        if (nodes.filter((n) => n.masterId !== undefined).length !== masters * replicasPerMaster)
          return false;
        for (const replica of nodes.filter((n) => n.masterId !== undefined)) {
          const [info] = await redisCommands(replica.port, [["INFO", "replication"]]);
          if (!String(info).includes("master_link_status:up")) return false;
        }
        return true;
      },
      { timeoutMs: 30_000, intervalMs: 100, message: "every replica in sync with its master" },
    );
    return cluster;
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}
