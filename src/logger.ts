/** JSON lines on stdout, one object per event; the level comes from config. */
export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function createLogger(
  level: LogLevel,
  base: LogFields = {},
  write: (line: string) => void = defaultWrite,
): Logger {
  const threshold = RANK[level];
  const emit = (at: LogLevel, message: string, fields?: LogFields) => {
    if (RANK[at] < threshold) return;
    write(
      `${JSON.stringify({ time: new Date().toISOString(), level: at, message, ...base, ...serialise(fields) })}\n`,
    );
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger(level, { ...base, ...fields }, write),
  };
}

function defaultWrite(line: string) {
  process.stdout.write(line);
}

function serialise(fields?: LogFields): LogFields | undefined {
  if (!fields) return fields;
  const out: LogFields = {};
  for (const [key, value] of Object.entries(fields)) {
    out[key] =
      value instanceof Error
        ? { name: value.name, message: value.message, code: (value as { code?: unknown }).code }
        : value;
  }
  return out;
}

/** A logger that drops everything: for tests and benchmarks that measure, not read. */
export const silentLogger: Logger = createLogger("error", {}, () => {});
