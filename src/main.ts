/**
 * The single entry point: `orders <api|actors|executions|gateway|all|exchange|dlq|keys|reconcile|health>`, from
 * source (`bun src/main.ts all`) or as the compiled binary (`dist/orders all`). The only file of src/
 * that sees actors/: it hands the placement and execution actors to the service process.
 */

import { runExecutionDeadLetterCommand } from "../actors/executions/dlq-command.ts";
import { startExecutionActors } from "../actors/executions/process.ts";
import { runDeadLetterCommand } from "../actors/placement/dlq-command.ts";
import { startPlacementActors } from "../actors/placement/process.ts";
import { ConfigError, exchangeFeedUrl, loadConfig } from "./config.ts";
import { createLogger } from "./logger.ts";
import { startExchange } from "./process/exchange.ts";
import { runGateway, startGateway } from "./process/gateway.ts";
import { runKeysCommand } from "./process/keys-command.ts";
import type { RunningProcess } from "./process/lifecycle.ts";
import { runReconcileCommand } from "./process/reconcile-command.ts";
import { type ActorsStarter, startService } from "./process/service.ts";

const USAGE =
  "usage: orders <api|actors|executions|gateway|all|exchange|dlq|reconcile|health> | orders keys <create|list|revoke> (see README.md)";
const COMMANDS = [
  "api",
  "actors",
  "executions",
  "gateway",
  "all",
  "exchange",
  "dlq",
  "keys",
  "reconcile",
  "health",
];

/**
 * `all` runs everything of a local system in one process: the placement and execution actors, and the
 * gateway when there is a venue feed to read (EXCHANGE_URL or EXCHANGE_FEED_URL).
 */
const startEverything: ActorsStarter = async (config, logger, shared, closers) => {
  await startPlacementActors(config, logger, shared, closers);
  await startExecutionActors(config, logger, shared, closers);
  if (exchangeFeedUrl(config) !== null)
    runGateway(config, logger, shared.commands, shared.keys, shared.metrics, closers);
};

const ACTORS: Record<"api" | "actors" | "executions" | "all", ActorsStarter | undefined> = {
  api: undefined,
  actors: startPlacementActors,
  executions: startExecutionActors,
  all: startEverything,
};

/**
 * The container health check (the runtime image has no shell or curl): 0 when this host's process
 * answers /health/ready on OPS_PORT within 2 s, 1 otherwise.
 */
async function checkHealth(port: number): Promise<number> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/health/ready`, {
      signal: AbortSignal.timeout(2_000),
    });
    return response.ok ? 0 : 1;
  } catch {
    return 1;
  }
}

async function main(argv: string[]): Promise<number> {
  const [command = "", ...rest] = argv;
  if (!COMMANDS.includes(command)) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`orders: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  if (command === "health") return checkHealth(config.OPS_PORT);
  // The operator's commands print lines: results on stdout, usage and refusals on stderr.
  const print = (line: string) => process.stdout.write(`${line}\n`);
  const printError = (line: string) => process.stderr.write(`${line}\n`);
  if (command === "dlq")
    return rest.includes("--executions")
      ? runExecutionDeadLetterCommand(
          config,
          rest.filter((arg) => arg !== "--executions"),
          print,
        )
      : runDeadLetterCommand(config, rest, print);
  if (command === "reconcile") return runReconcileCommand(config, rest, print, printError);
  if (command === "keys") return runKeysCommand(config, rest, print, printError);

  const logger = createLogger(config.LOG_LEVEL, { kind: command, pid: process.pid });
  let running: RunningProcess;
  try {
    if (command === "exchange") running = await startExchange(config, logger);
    else if (command === "gateway") running = await startGateway(config, logger);
    else {
      const kind = command as keyof typeof ACTORS;
      running = await startService(config, logger, kind, ACTORS[kind]);
    }
  } catch (error) {
    logger.error("start failed", { error, detail: String((error as Error)?.stack ?? error) });
    return 1;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info("shutting down", { signal });
      const hardStop = setTimeout(() => {
        logger.error("shutdown deadline passed; exiting");
        resolve(1);
      }, config.SHUTDOWN_DEADLINE_MS + 5_000);
      running
        .close()
        .then(() => {
          clearTimeout(hardStop);
          logger.info("stopped");
          resolve(0);
        })
        .catch((error) => {
          logger.error("shutdown failed", { error });
          resolve(1);
        });
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`orders: ${String((error as Error)?.stack ?? error)}\n`);
    process.exit(1);
  },
);
