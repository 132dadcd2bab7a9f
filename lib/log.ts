import winston from 'winston';

/** JSON logs on stderr; callers add context with `logger.child({ controller, key, namespace })`. */
export function createLogger(level = 'info', component = 'sigil'): winston.Logger {
  return winston.createLogger({
    level,
    defaultMeta: { component },
    format: winston.format.combine(
      winston.format.timestamp(),
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
