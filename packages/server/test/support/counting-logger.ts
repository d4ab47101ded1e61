/** A Logger that drops everything but remembers error-level lines, so a test can expect none (a bug logs at error). */
import type { Logger } from '../../src/core/logger.js';

/** The logger and the error lines it saw (message and fields). */
export function countingLogger(): { log: Logger; errors: { msg: string | undefined; obj: object }[] } {
  const errors: { msg: string | undefined; obj: object }[] = [];
  const log: Logger = {
    debug() {},
    info() {},
    warn() {},
    error(obj, msg) {
      errors.push({ msg, obj });
    },
    child() {
      return log;
    },
  };
  return { log, errors };
}
