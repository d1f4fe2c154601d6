import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(service: string, instanceId: string, level: string): Logger {
  return pino({
    level,
    base: { service, instance: instanceId },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: ['secrets', '*.secrets', 'token', '*.token', 'authorization'],
  });
}
