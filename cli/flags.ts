// The flags of the two long-running commands, `sigil operator` and `sigil webhook`, parsed with
// node:util's parseArgs instead of commander. commander is ESM and imports node:child_process,
// node:fs, node:util and node:process as ESM namespaces, which loads child_process, dgram,
// readline, fs/promises, worker_threads and more: 4.1 MiB resident for the life of a process
// that parses its flags once (Node 24: 50.4 MiB with https loaded, 54.5 with commander too).
// The short-lived commands (sigil status, ca, doctor, ...) keep commander.

import { createRequire } from 'node:module';
import type { ParseArgsConfig } from 'node:util';

const { parseArgs } = createRequire(import.meta.url)('node:util') as typeof import('node:util');

export interface FlagSpec {
  /** The long name without dashes (`metrics-address`); a switch on by default is given as `--no-<name>`. */
  name: string;
  /** The value's placeholder in help (`<host:port>`); absent for a switch. */
  value?: string;
  description: string;
  /** The value when the flag is not given (usually from the environment); shown in help. */
  default?: string | boolean | undefined;
}

export interface CommandSpec {
  name: string;
  description: string;
  flags: FlagSpec[];
}

/** Flag values by camel-cased name (`metricsAddress`), as the commands read them. */
export type FlagValues = Record<string, string | boolean | undefined>;

/** A command line the command cannot run with; the message says what was wrong. */
export class UsageError extends Error {}

const camel = (name: string) => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Parses argv (after the command's name); `help` when --help or -h was asked for. */
export function parseFlags(spec: CommandSpec, argv: string[]): { help: true } | { values: FlagValues } {
  if (argv.includes('--help') || argv.includes('-h')) return { help: true };
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const f of spec.flags) options[f.name] = { type: f.value ? 'string' : 'boolean' };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: false, allowNegative: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const values: FlagValues = {};
  for (const f of spec.flags)
    values[camel(f.name)] =
      (parsed.values as Record<string, string | boolean | undefined>)[f.name] ?? f.default;
  return { values };
}

/** The command's help, in the shape commander prints it. */
export function helpText(spec: CommandSpec, program: string): string {
  const rows = spec.flags.map((f) => {
    const flag = f.value ? `--${f.name} ${f.value}` : f.default === true ? `--no-${f.name}` : `--${f.name}`;
    const shown =
      f.value && f.default !== undefined && f.default !== ''
        ? ` (default: ${JSON.stringify(f.default)})`
        : '';
    return [flag, `${f.description}${shown}`] as const;
  });
  rows.push(['-h, --help', 'display help for command']);
  const width = Math.max(...rows.map(([flag]) => flag.length)) + 2;
  return [
    `Usage: ${program} ${spec.name} [options]`,
    '',
    spec.description,
    '',
    'Options:',
    ...rows.map(([flag, text]) => `  ${flag.padEnd(width)}${text}`),
    '',
  ].join('\n');
}
