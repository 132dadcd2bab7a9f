#!/usr/bin/env node
import { Command } from 'commander';
import { operatorCommand } from './operator.ts';
import { webhookCommand } from './webhook.ts';

const program = new Command();
program.name('sigil').description('mTLS identities for Kubernetes pods');
operatorCommand(program);
webhookCommand(program);
await program.parseAsync(process.argv);
