/**
 * The command tree. Each command family lives in its own file and is added from the list
 * below; commands that talk to a running server build on `apiCommand` (common.ts).
 */
import { Command } from 'commander';
import { addAppCommands } from './app.js';
import { addDeviceCommands } from './device.js';
import { addImportCommand } from './import.js';
import { addProductCommands } from './product.js';
import { addServeCommand } from './serve.js';
import { addTopologyCommands } from './topology.js';
import { addAuditCommand } from './audit.js';
import { addKeysCommands } from './keys.js';
import { addTokenCommands } from './token.js';
import { addStoreCommands } from './store.js';
import { addDoctorCommand } from './doctor.js';

/** Command families in help order. Append yours: `(program) => void`. */
export const CLI_COMMANDS: ((program: Command) => void)[] = [addServeCommand, addProductCommands, addDeviceCommands, addImportCommand, addAppCommands, addTopologyCommands, addTokenCommands, addAuditCommand, addKeysCommands, addStoreCommands, addDoctorCommand];

export function buildCli(): Command {
  const program = new Command('thingauth').description('self-hosted IoT device identity and access').version('0.1.0');
  for (const add of CLI_COMMANDS) add(program);
  return program;
}
