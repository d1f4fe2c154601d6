import { createLogger } from '../../src/core/logger.js';

/** A logger for in-process services in tests: quiet unless TEST_LOG_LEVEL says otherwise. */
export const testLog = (name: string) =>
  createLogger(name, 'test', process.env.TEST_LOG_LEVEL ?? 'silent');
