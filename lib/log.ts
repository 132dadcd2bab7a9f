import winston from 'winston';
import { isoString } from './time.ts';

/** JSON logs on stderr; callers add context with `logger.child({ controller, key, namespace })`. */
export function createLogger(level = 'info', component = 'sigil'): winston.Logger {
  return winston.createLogger({
    level,
    defaultMeta: { component },
    format: winston.format.combine(
      // Written by lib/time.ts: logform's own is Date's toISOString (see there).
      winston.format.timestamp({ format: () => isoString(Date.now()) }),
      winston.format.errors({ stack: false }),
      winston.format.json(),
    ),
    transports: [
      new winston.transports.Console({
        stderrLevels: ['error', 'warn', 'info', 'debug', 'verbose', 'silly'],
      }),
    ],
  });
}

/** A logger that drops everything, for tests that do not look at logs. */
export function silentLogger(): winston.Logger {
  return winston.createLogger({
    silent: true,
    transports: [new winston.transports.Console({ silent: true })],
  });
}
