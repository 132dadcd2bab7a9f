#!/usr/bin/env node
import { commanderExit, describeCliError, Exit, lastKubeConfig } from './errors.ts';
import { type CommandSpec, type FlagValues, helpText, parseFlags, UsageError } from './flags.ts';
import { operatorSpec, runOperator } from './operator.ts';
import { runWebhook, webhookSpec } from './webhook.ts';

// bin/kubectl-sigil runs it as a kubectl plugin, so usage lines read `kubectl sigil ...`.
const programName = process.env.SIGIL_CLI_NAME ?? 'sigil';
const description = 'mTLS identities for Kubernetes pods';

/** The long-running commands: their flags are parsed without commander (see cli/flags.ts). */
const servers: Record<string, { spec: CommandSpec; run: (values: FlagValues) => Promise<void> }> = {
  operator: { spec: operatorSpec, run: runOperator },
  webhook: { spec: webhookSpec, run: runWebhook },
};

async function runServer(name: string, argv: string[]): Promise<never | undefined> {
  const { spec, run } = servers[name]!;
  let parsed: ReturnType<typeof parseFlags>;
  try {
    parsed = parseFlags(spec, argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`error: ${err.message}\n(${programName} ${name} --help lists the flags)`);
    process.exit(Exit.Error);
  }
  if ('help' in parsed) {
    process.stdout.write(helpText(spec, programName));
    process.exit(Exit.Ok);
  }
  await run(parsed.values);
  return undefined;
}

const [first = '', second = ''] = process.argv.slice(2);
if (first === 'help' && Object.hasOwn(servers, second)) {
  process.stdout.write(helpText(servers[second]!.spec, programName));
  process.exit(Exit.Ok);
} else if (Object.hasOwn(servers, first)) {
  try {
    await runServer(first, process.argv.slice(3));
  } catch (err) {
    // As the other commands end: one line saying what failed and what to do, exit 2.
    console.error(`${programName}: ${describeCliError(err, lastKubeConfig())}`);
    process.exit(Exit.Error);
  }
} else {
  // Everything else is short-lived and uses commander, and the commands that use
  // @kubernetes/client-node's generated API (about 80 MiB held while loaded: see lib/kube/client.ts).
  const { Command, CommanderError } = await import('commander');
  const program = new Command();
  program.name(programName).description(description);
  // Usage errors throw (inherited by every command added below) instead of exiting 1, which means "not ready".
  program.exitOverride();
  for (const [name, { spec }] of Object.entries(servers))
    program
      .command(name)
      .description(spec.description)
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .action(() => runServer(name, process.argv.slice(process.argv.indexOf(name) + 1)));
  const [{ certificateCommands }, { doctorCommand }, { caCommands }] = await Promise.all([
    import('./certificates.ts'),
    import('./doctor.ts'),
    import('./ca.ts'),
  ]);
  certificateCommands(program);
  caCommands(program);
  doctorCommand(program);
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    // Commander has printed its own message for usage errors.
    if (err instanceof CommanderError) process.exit(commanderExit(err));
    console.error(`${program.name()}: ${describeCliError(err, lastKubeConfig())}`);
    process.exit(Exit.Error);
  }
}
