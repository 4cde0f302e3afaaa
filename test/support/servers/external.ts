/** An external MongoDB (TEST_MONGO_URL): used as is, never killed, paused or restarted. */
import { parseMongoUrl } from "../../../src/config.ts";
import type { TestServer } from "./owned-server.ts";

export class ExternalServer implements TestServer {
  readonly kind = "external-mongodb";
  readonly faultable = false;
  readonly port: number;
  constructor(readonly url: string) {
    this.port = Number(parseMongoUrl(url, { requireDatabase: false }).hosts[0]?.split(":").at(-1) ?? 27017);
  }
  private refuse(): never {
    throw new Error("fault injection needs a server the harness owns; unset TEST_MONGO_URL");
  }
  async kill() {
    this.refuse();
  }
  async restart() {
    this.refuse();
  }
  pause() {
    this.refuse();
  }
  resume() {
    this.refuse();
  }
  async stop() {}
}

/** TEST_MONGO_URL without its database (the tests pick one each, mongoUrlFor). */
export function externalMongo(url: string): TestServer {
  return new ExternalServer(url.replace(/\/[^/?]*(\?|$)/, "$1"));
}
