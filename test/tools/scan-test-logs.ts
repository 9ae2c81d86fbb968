/**
 * After `THINGAUTH_TEST_LOG_DIR=<dir> npm test`: checks that no log line written by any test
 * server of the run holds any secret any of them stored (DeviceSecrets, DeviceTokens,
 * ProductSecrets, appSecrets, admin tokens, server keys). Exit 1 and the places on a leak.
 *
 *   node dist/test/tools/scan-test-logs.js <dir>
 *
 * Without an argument it does nothing (node --test also runs this file as part of dist/test/).
 */
import fs from 'node:fs';
import path from 'node:path';

function scan(dir: string): number {
  const files = fs.readdirSync(dir);
  const secrets = new Set<string>();
  for (const f of files.filter((f) => f.endsWith('.secrets'))) {
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) if (line.length >= 8) secrets.add(line);
  }
  // Index secrets by their first 8 characters so each log position costs one lookup.
  const byPrefix = new Map<string, string[]>();
  for (const s of secrets) {
    const k = s.slice(0, 8);
    byPrefix.set(k, [...(byPrefix.get(k) ?? []), s]);
  }
  let leaks = 0;
  let lines = 0;
  for (const f of files.filter((f) => f.endsWith('.log'))) {
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      lines++;
      for (let i = 0; i + 8 <= line.length; i++) {
        const candidates = byPrefix.get(line.slice(i, i + 8));
        if (!candidates) continue;
        for (const s of candidates) {
          if (line.startsWith(s, i)) {
            leaks++;
            process.stderr.write(`${f}: secret ${s.slice(0, 4)}… in: ${line.slice(0, 300)}\n`);
          }
        }
      }
    }
  }
  process.stdout.write(`scanned ${lines} log lines for ${secrets.size} secrets: ${leaks} leaks\n`);
  return leaks;
}

const dir = process.argv[2];
if (dir) process.exitCode = scan(dir) > 0 ? 1 : 0;
