/**
 * `thingauth node list|drain|undrain`: the nodes of a cluster and draining one for an upgrade
 * (docs/deployment.md "Rolling upgrade"). `drain --wait` follows the node until its sessions
 * are gone.
 */
import type { Command } from 'commander';
import { apiPath } from './api-client.js';
import { apiCommand, clientFor, formatTable, print, type ApiCommandOptions } from './common.js';

export function addNodeCommands(program: Command): void {
  const node = program.command('node').description('the nodes of a cluster: list, drain for an upgrade, undrain');

  apiCommand(node, 'list', 'live nodes, their sessions and whether they drain').action(async (o: ApiCommandOptions) => {
    const r = await clientFor(o).request('GET', apiPath('nodes'));
    print(o, r, () => `mode ${r.mode}, this node ${r.self}, redis ${r.redis}\n` + formatTable(r.nodes, ['nodeId', 'host', 'pid', 'version', 'sessions', 'draining', 'beatAt']));
  });

  apiCommand(node, 'drain <nodeId>', 'stop new logins on a node and move its devices away at a bounded rate (THINGAUTH_DRAIN_RATE per second)')
    .option('--wait', 'return when the node holds no session any more')
    .action(async (nodeId: string, o: ApiCommandOptions & { wait?: boolean }) => {
      const client = clientFor(o);
      const r = await client.request('POST', apiPath('nodes', nodeId, 'drain'));
      if (o.wait) {
        for (;;) {
          const list = await client.request('GET', apiPath('nodes'));
          const n = (list.nodes as { nodeId: string; sessions: number }[]).find((x) => x.nodeId === nodeId);
          if (!n || n.sessions === 0) break;
          if (!o.json) process.stderr.write(`\r${n.sessions} sessions left on ${nodeId}   `);
          await new Promise((res) => setTimeout(res, 1_000));
        }
        if (!o.json) process.stderr.write('\n');
      }
      print(o, r, () => `node ${nodeId} is draining${o.wait ? ' and holds no session' : ''}`);
    });

  apiCommand(node, 'undrain <nodeId>', 'let a drained node take logins again').action(async (nodeId: string, o: ApiCommandOptions) => {
    const r = await clientFor(o).request('POST', apiPath('nodes', nodeId, 'undrain'));
    print(o, r, () => `node ${nodeId} takes logins again`);
  });
}
