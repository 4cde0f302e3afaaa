/**
 * `orders keys create --account NAME [--label TEXT]`, `orders keys list [--account NAME]` and
 * `orders keys revoke ID`: the operator's tool for API keys (src/auth/api-keys.ts). `create` prints the
 * token once, alone on the last line of stdout (so `orders keys create ... | tail -n 1` captures it);
 * nothing can show it again, since only its hash is stored. `list` never prints a hash or a token.
 * Exit codes: 0 done (a revoke of a revoked key included), 1 no such key, 2 usage.
 */

import { MongoApiKeyStore } from "../adapters/mongo/api-key-store.ts";
import { createMongoClient } from "../adapters/mongo/client.ts";
import { isValidAccount, isValidLabel, MAX_LABEL_LENGTH } from "../auth/api-keys.ts";
import { type Config, databaseName } from "../config.ts";

const USAGE = [
  "usage: orders keys create --account NAME [--label TEXT]",
  "       orders keys list [--account NAME]",
  "       orders keys revoke ID",
].join("\n");

type Parsed =
  | { action: "create"; account: string; label: string }
  | { action: "list"; account: string | undefined }
  | { action: "revoke"; id: string };

/**
 * @param print one line of stdout
 * @param printError one line of stderr (usage and refusals; default: `print`)
 */
export async function runKeysCommand(
  config: Config,
  args: string[],
  print: (line: string) => void,
  printError: (line: string) => void = print,
): Promise<number> {
  const parsed = parseArgs(args);
  if (typeof parsed === "string") {
    printError(parsed ? `orders keys: ${parsed}\n${USAGE}` : USAGE);
    return 2;
  }
  const mongo = createMongoClient(config.MONGO_URL, {
    timeoutMs: config.MONGO_TIMEOUT_MS,
    // One operation at a time: two connections are plenty, and leave the server's pool to the service.
    maxPoolSize: Math.min(2, config.MONGO_MAX_POOL_SIZE),
  });
  try {
    const store = new MongoApiKeyStore(mongo.db(databaseName(config.MONGO_URL)), {
      timeoutMs: config.MONGO_TIMEOUT_MS,
    });
    if (parsed.action === "create") {
      await store.ensureIndexes();
      const { key, token } = await store.create({ account: parsed.account, label: parsed.label });
      print(`created key ${key.id} for account ${key.account}${key.label ? ` (${key.label})` : ""}`);
      print("the token follows; it is shown only this once: store it now");
      print(token);
      return 0;
    }
    if (parsed.action === "list") {
      for (const key of await store.list(parsed.account)) {
        print(
          [
            key.id,
            key.account,
            JSON.stringify(key.label),
            key.createdAt.toISOString(),
            key.revokedAt ? `revoked ${key.revokedAt.toISOString()}` : "active",
          ].join("\t"),
        );
      }
      return 0;
    }
    const result = await store.revoke(parsed.id);
    if (result === "missing") {
      printError(`orders keys: no key ${parsed.id}`);
      return 1;
    }
    print(result === "revoked" ? `revoked ${parsed.id}` : `${parsed.id} was already revoked`);
    return 0;
  } finally {
    await mongo.close();
  }
}

/** The command, or a string: the reason it is refused ("" for no reason but the usage). */
function parseArgs(args: string[]): Parsed | string {
  const [action, ...rest] = args;
  if (action === "revoke") {
    if (rest.length !== 1 || rest[0]!.startsWith("-")) return "revoke takes exactly one key id";
    return { action, id: rest[0]! };
  }
  if (action !== "create" && action !== "list") return action ? `unknown action ${action}` : "";
  const flags = new Map<string, string>();
  const allowed = action === "create" ? ["--account", "--label"] : ["--account"];
  for (let i = 0; i < rest.length; i += 2) {
    const flag = rest[i]!;
    const value = rest[i + 1];
    if (!allowed.includes(flag)) return `unknown argument ${flag}`;
    if (value === undefined) return `${flag} needs a value`;
    if (flags.has(flag)) return `${flag} given twice`;
    flags.set(flag, value);
  }
  const account = flags.get("--account");
  if (account !== undefined && !isValidAccount(account)) {
    return "--account must be 1 to 64 characters of A-Z a-z 0-9 . _ -";
  }
  if (action === "list") return { action, account };
  if (account === undefined) return "create needs --account NAME";
  const label = flags.get("--label") ?? "";
  if (!isValidLabel(label)) return `--label must be one line of at most ${MAX_LABEL_LENGTH} characters`;
  return { action, account, label };
}
