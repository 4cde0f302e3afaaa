/** A real `mongod` (when one is on PATH) as a single-member replica set, so majority writes work. */

import { freePort, waitFor } from "../wait-for.ts";
import { OwnedServer, respondsTo, type TestServer, tempDir } from "./owned-server.ts";

export class MongodServer extends OwnedServer {
  readonly kind = "mongod";
  get url() {
    return `mongodb://127.0.0.1:${this.port}/?directConnection=true`;
  }
  protected command() {
    return [
      "mongod",
      "--port",
      String(this.port),
      "--bind_ip",
      "127.0.0.1",
      "--dbpath",
      this.dir,
      "--replSet",
      "rs0",
      "--quiet",
    ];
  }
  protected ready() {
    return respondsTo(this.port, null, null);
  }
  protected override async afterStart() {
    const { MongoClient } = await import("mongodb");
    const client = new MongoClient(this.url, { serverSelectionTimeoutMS: 5_000 });
    try {
      await client
        .db("admin")
        .command({ replSetInitiate: { _id: "rs0", members: [{ _id: 0, host: `127.0.0.1:${this.port}` }] } });
    } catch (error) {
      if ((error as { codeName?: string }).codeName !== "AlreadyInitialized") throw error;
    }
    await waitFor(async () => (await client.db("admin").command({ hello: 1 })).isWritablePrimary, {
      timeoutMs: 30_000,
      message: "mongod primary",
    });
    await client.close();
  }
}

export async function startMongod(): Promise<TestServer> {
  return new MongodServer(await freePort(), tempDir("mongod")).start();
}
