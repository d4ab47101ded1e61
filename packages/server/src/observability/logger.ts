/** The process logger: pino, JSON lines on stdout. */
import { pino } from 'pino';
import type { Logger } from '../core/logger.js';

/** Creates the root logger at `level`. */
export function createLogger(level: string): Logger & { level: string } {
  return pino({ level, base: { app: 'glasscast' } });
}
