/**
 * Counts the MongoDB operations a process sends, by wire command (`insert`, `update`, `find`, ...), for
 * `orders_mongo_operations_total`: a view of a `Db` whose collections count each call.
 *
 * Why not the driver's command monitoring: with `monitorCommands` the driver builds a started and a
 * succeeded event for every command and deserializes every reply in full for the latter, whether anyone
 * listens or not. Under Bun that is about a fifth of the client's CPU per updateOne (median 225 against
 * 183 µs, `bun run bench:mongo-client`), some 40 µs of a placement actor's CPU per order.
 *
 * What is counted: one per call of a method below, when it is called, and one per kind of operation in
 * an unordered bulkWrite (a cursor's `getMore`s and the driver's own commands, such as heartbeats and
 * `endSessions`, are not); `db.command(doc)` by its first key. Everything else passes through
 * unchanged, bound to the real object (the driver's classes keep private state that a proxy as `this`
 * could not reach).
 */
import type { Collection, Db, Document } from "mongodb";

const COMMAND_OF_METHOD: Readonly<Record<string, string>> = {
  insertOne: "insert",
  insertMany: "insert",
  updateOne: "update",
  updateMany: "update",
  replaceOne: "update",
  deleteOne: "delete",
  deleteMany: "delete",
  find: "find",
  findOne: "find",
  findOneAndUpdate: "findAndModify",
  findOneAndReplace: "findAndModify",
  findOneAndDelete: "findAndModify",
  aggregate: "aggregate",
  countDocuments: "aggregate",
  estimatedDocumentCount: "count",
  distinct: "distinct",
  createIndex: "createIndexes",
  createIndexes: "createIndexes",
  listIndexes: "listIndexes",
  dropIndex: "dropIndexes",
  drop: "drop",
};

const COMMAND_OF_DB_METHOD: Readonly<Record<string, string>> = {
  createCollection: "create",
  dropDatabase: "dropDatabase",
  listCollections: "listCollections",
};

export type CountOperation = (command: string) => void;

/**
 * `target` seen through a proxy: a method named in `commands` counts its command and then runs on
 * `target`; `wrap` may replace what other members give. Wrappers are made once per member.
 */
function counting<T extends object>(
  target: T,
  commands: Readonly<Record<string, string>>,
  count: CountOperation,
  wrap: (name: string | symbol, value: unknown) => unknown = (_, value) => value,
): T {
  const members = new Map<string | symbol, unknown>();
  return new Proxy(target, {
    get(real, name) {
      if (members.has(name)) return members.get(name);
      const value = Reflect.get(real, name, real);
      if (typeof value !== "function") return value;
      const command = typeof name === "string" ? commands[name] : undefined;
      const member = command
        ? (...args: unknown[]) => {
            count(command);
            return value.apply(real, args);
          }
        : wrap(name, value.bind(real));
      members.set(name, member);
      return member;
    },
  });
}

/** The write command each kind of a bulkWrite's operations goes out as. */
const COMMAND_OF_BULK_OPERATION: Readonly<Record<string, string>> = {
  insertOne: "insert",
  updateOne: "update",
  updateMany: "update",
  replaceOne: "update",
  deleteOne: "delete",
  deleteMany: "delete",
};

function countedCollection<T extends Document>(
  collection: Collection<T>,
  count: CountOperation,
): Collection<T> {
  return counting(collection, COMMAND_OF_METHOD, count, (name, bound) => {
    if (name !== "bulkWrite") return bound;
    const bulkWrite = bound as (operations: Document[], ...rest: unknown[]) => unknown;
    // An unordered bulkWrite goes out as one command per kind of operation in it (within the server's
    // batch limits, which the service's batches stay far below; an ordered one, per run of one kind:
    // the service sends none).
    return (operations: Document[], ...rest: unknown[]) => {
      const commands = new Set(
        operations.map((operation) => COMMAND_OF_BULK_OPERATION[Object.keys(operation)[0] ?? ""]),
      );
      for (const command of commands) if (command) count(command);
      return bulkWrite(operations, ...rest);
    };
  });
}

/** `db` whose collections (and commands) count every operation through `count`. */
export function countOperations(db: Db, count: CountOperation): Db {
  return counting(db, COMMAND_OF_DB_METHOD, count, (name, bound) => {
    const method = bound as (...args: unknown[]) => unknown;
    if (name === "collection")
      return (...args: unknown[]) => countedCollection(method(...args) as Collection<Document>, count);
    if (name === "command")
      return (command: Document, ...rest: unknown[]) => {
        count(Object.keys(command)[0] ?? "command");
        return method(command, ...rest);
      };
    return bound;
  });
}
