/** The command tree. Each command family lives in its own file. */
import { Command } from 'commander';
import { addServeCommand } from './serve.js';

export function buildCli(): Command {
  const program = new Command('thingauth').description('self-hosted IoT device identity and access').version('0.1.0');
  addServeCommand(program);
  return program;
}
