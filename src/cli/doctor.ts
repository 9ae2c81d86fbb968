/**
 * `thingauth doctor`: the connection doctor (POST /api/v1/diagnose/connect, admin token) from
 * the command line.
 *   thingauth doctor --product PK --device DN                     recent refusals in plain words
 *   thingauth doctor --client-id .. --username .. --password ..   a CONNECT the device sends
 *   thingauth doctor --product PK --device DN --random R --sign S [--sign-method M] [--regnwl]
 *                                                                 a dynamic registration request
 * Exit status: 0 ok, 1 refused (or the request failed), 2 unknown (nothing to judge by).
 * --password-stdin reads the password from standard input, out of the shell history and the
 * process list.
 */
import { Option, type Command } from 'commander';
import { apiCommand, clientFor, intOption, print, type ApiCommandOptions } from './common.js';

interface DoctorFlags extends ApiCommandOptions {
  product?: string;
  device?: string;
  clientId?: string;
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  transport?: string;
  keepalive?: number;
  source?: string;
  random?: string;
  sign?: string;
  signMethod?: string;
  regnwl?: boolean;
}

interface Finding {
  code: string;
  severity: 'error' | 'warning' | 'info';
  message: string;
  hint: string;
}

const MARK: Record<Finding['severity'], string> = { error: 'ERROR  ', warning: 'WARNING', info: 'INFO   ' };

/** The answer as people read it: the verdict, then each finding with its hint. */
export function formatDiagnosis(r: { verdict: string; findings: Finding[] }): string {
  const head = r.verdict === 'ok' ? 'verdict: ok (the login passes)' : r.verdict === 'refused' ? 'verdict: REFUSED' : 'verdict: unknown (nothing to judge by)';
  const lines = [head, ''];
  for (const f of r.findings) {
    lines.push(`${MARK[f.severity]} ${f.message} [${f.code}]`);
    lines.push(`         -> ${f.hint}`);
  }
  return lines.join('\n');
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

export function addDoctorCommand(program: Command): void {
  apiCommand(program, 'doctor', 'why a device cannot get in: decode its recent refusals, or check a CONNECT or registration it sends (admin token)')
    .option('--product <productKey>', "the device's ProductKey (with --device)")
    .option('--device <deviceName>', "the device's DeviceName (with --product)")
    .option('--client-id <clientId>', 'the MQTT ClientId exactly as the device sends it, e.g. "pk.dn|securemode=3,signmethod=hmacsha256,timestamp=...|"')
    .option('--username <username>', 'the MQTT username (deviceName&productKey)')
    .option('--password <password>', 'the MQTT password (the signature); prefer --password-stdin')
    .option('--password-stdin', 'read the password from standard input')
    .addOption(new Option('--transport <transport>', 'how the device connects (default: tls assumed)').choices(['tcp', 'tls', 'ws', 'wss']))
    .option('--keepalive <seconds>', 'the keep-alive the device asks for (default 60)', intOption('--keepalive', 0, 65535))
    .option('--source <address>', "the device's address as the server sees it (is it throttled?)")
    .option('--random <random>', 'dynamic registration: the random the device sends (with --product, --device, --sign)')
    .option('--sign <sign>', 'dynamic registration: the sign the device sends')
    .option('--sign-method <method>', 'dynamic registration: the signMethod (default hmacmd5)')
    .option('--regnwl', 'dynamic registration without pre-registration (authType=regnwl)')
    .action(async (o: DoctorFlags) => {
      let body: unknown;
      const connect = o.clientId !== undefined || o.username !== undefined || o.password !== undefined || o.passwordStdin;
      const registration = o.random !== undefined || o.sign !== undefined;
      if (connect && registration) throw new Error('give either a CONNECT (--client-id, --username, --password) or a registration (--random, --sign), not both');
      if (connect) {
        if (o.password !== undefined && o.passwordStdin) throw new Error('--password and --password-stdin exclude each other');
        const password = o.passwordStdin ? await readStdin() : o.password;
        if (o.clientId === undefined || o.username === undefined || password === undefined) throw new Error('a CONNECT needs --client-id, --username and --password (or --password-stdin)');
        body = {
          clientId: o.clientId,
          username: o.username,
          password,
          ...(o.transport ? { transport: o.transport } : {}),
          ...(o.keepalive !== undefined ? { keepalive: o.keepalive } : {}),
          ...(o.source ? { sourceAddress: o.source } : {}),
        };
      } else if (registration) {
        if (!o.product || !o.device || o.random === undefined || o.sign === undefined) throw new Error('a registration needs --product, --device, --random and --sign');
        body = {
          registration: {
            productKey: o.product,
            deviceName: o.device,
            random: o.random,
            sign: o.sign,
            ...(o.signMethod ? { signMethod: o.signMethod } : {}),
            ...(o.regnwl ? { kind: 'regnwl' } : {}),
            ...(o.transport ? { transport: o.transport === 'tcp' || o.transport === 'ws' ? 'plain' : 'tls' } : {}),
          },
        };
      } else {
        if (!o.product || !o.device) throw new Error('give --product and --device (or a CONNECT with --client-id, --username, --password)');
        body = { productKey: o.product, deviceName: o.device };
      }
      const r = await clientFor(o).request('POST', '/api/v1/diagnose/connect', body);
      print(o, r, () => formatDiagnosis(r));
      process.exitCode = r.verdict === 'ok' ? 0 : r.verdict === 'refused' ? 1 : 2;
    });
}
