#!/usr/bin/env node
/** The `thingauth` command. */
import { buildCli } from './program.js';

buildCli()
  .parseAsync(process.argv)
  .catch((e: unknown) => {
    process.stderr.write(`thingauth: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
