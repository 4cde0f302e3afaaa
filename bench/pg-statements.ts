/**
 * `bench:system --pg-stats`: which SQL statements FerretDB sent PostgreSQL during phase B, and what
 * each cost per placed order (pg_stat_statements, loaded only when asked: see PG_STAT_STATEMENTS_ENV).
 */
import { PG_STAT_STATEMENTS_ENV } from "../test/support/servers/postgres.ts";
import type { Servers } from "../test/support/system.ts";
import { table } from "./process-stats.ts";

interface Psql {
  psql(sql: string, database?: string): Promise<string>;
}

export interface StatementCost {
  statement: string;
  calls_per_placed: number;
  plan_ms_per_placed: number;
  exec_ms_per_placed: number;
}

/** Asks the harness for pg_stat_statements; call before the servers start. */
export function enableStatementStatistics(): void {
  process.env[PG_STAT_STATEMENTS_ENV] = "1";
}

function postgresOf(servers: Servers): Psql | null {
  const postgres = (servers.mongo as { postgres?: Psql }).postgres;
  return process.env[PG_STAT_STATEMENTS_ENV] !== undefined && postgres ? postgres : null;
}

export async function resetStatementStatistics(servers: Servers): Promise<void> {
  await postgresOf(servers)?.psql("SELECT pg_stat_statements_reset()");
}

/** The `limit` costliest statements (plan + execution time) since the reset, per placed order. */
export async function statementCosts(servers: Servers, placed: number, limit = 12): Promise<StatementCost[]> {
  const postgres = postgresOf(servers);
  if (postgres === null || placed === 0) return [];
  const rows = await postgres.psql(
    `SELECT calls, total_plan_time, total_exec_time,
            left(regexp_replace(regexp_replace(query, '\\s+', ' ', 'g'), '\\(\\$[0-9, ()$]+\\)', '(...)', 'g'), 90)
     FROM pg_stat_statements ORDER BY total_plan_time + total_exec_time DESC LIMIT ${limit}`,
  );
  return rows
    .split("\n")
    .filter(Boolean)
    .map((row) => {
      const [calls, plan, exec, ...statement] = row.split("|");
      return {
        statement: statement.join("|"),
        calls_per_placed: Number(calls) / placed,
        plan_ms_per_placed: Number(plan) / placed,
        exec_ms_per_placed: Number(exec) / placed,
      };
    });
}

export function statementTable(costs: StatementCost[]): string {
  return table([
    ["PostgreSQL statement (phase B)", "calls/placed", "plan ms/placed", "exec ms/placed"],
    ...costs.map((c) => [
      c.statement,
      c.calls_per_placed.toFixed(2),
      c.plan_ms_per_placed.toFixed(3),
      c.exec_ms_per_placed.toFixed(3),
    ]),
  ]);
}
