#!/usr/bin/env node
import { Command } from 'commander';
import { certificateCommands } from './certificates.ts';
import { doctorCommand } from './doctor.ts';
import { operatorCommand } from './operator.ts';
import { webhookCommand } from './webhook.ts';

const program = new Command();
program.name('sigil').description('mTLS identities for Kubernetes pods');
operatorCommand(program);
webhookCommand(program);
certificateCommands(program);
doctorCommand(program);
await program.parseAsync(process.argv);
