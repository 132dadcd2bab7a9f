#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { commanderExit, describeCliError, Exit, lastKubeConfig } from './errors.ts';
import { operatorCommand } from './operator.ts';
import { webhookCommand } from './webhook.ts';

const program = new Command();
// bin/kubectl-sigil runs it as a kubectl plugin, so usage lines read `kubectl sigil ...`.
program.name(process.env.SIGIL_CLI_NAME ?? 'sigil').description('mTLS identities for Kubernetes pods');
// Usage errors throw (inherited by every command added below) instead of exiting 1, which means "not ready".
program.exitOverride();
operatorCommand(program);
webhookCommand(program);
// The long-running processes never load the commands that use @kubernetes/client-node's generated
// API: loaded, it holds about 80 MiB for the life of the process (see lib/kube/client.ts).
if (!['operator', 'webhook'].includes(process.argv[2] ?? '')) {
  const [{ certificateCommands }, { doctorCommand }, { caCommands }] = await Promise.all([
    import('./certificates.ts'),
    import('./doctor.ts'),
    import('./ca.ts'),
  ]);
  certificateCommands(program);
  caCommands(program);
  doctorCommand(program);
}
try {
  await program.parseAsync(process.argv);
} catch (err) {
  // Commander has printed its own message for usage errors.
  if (err instanceof CommanderError) process.exit(commanderExit(err));
  console.error(`${program.name()}: ${describeCliError(err, lastKubeConfig())}`);
  process.exit(Exit.Error);
}
