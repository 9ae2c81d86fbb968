/**
 * The operator console (console/, built by `npm run build` into dist/console/) served by the
 * management listener at `/`. The HTML and JavaScript are not secret, so these routes are on
 * the public list (caller-auth.ts PUBLIC_ROUTES); every API call the console makes carries the
 * operator's bearer token like any other client.
 *
 * Only the files the build produced are served: the directory is read ONCE at start into a
 * map (name -> bytes, content type), and a request is answered by a lookup of the matched
 * `:file` parameter in that map, never by joining a path, so no spelling reaches another file.
 * The client-side routes (CONSOLE_PAGES) all answer index.html. Every console response has a
 * strict Content-Security-Policy (no inline script, no eval, nothing from another origin,
 * no framing) and nosniff.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyReply } from 'fastify';
import type { ManagementApp } from './server.js';

/** Client-side routes of the console (console/src/router.ts): each answers index.html. */
export const CONSOLE_PAGES = [
  '/',
  '/products',
  '/products/:productKey',
  '/devices',
  '/devices/:productKey/:deviceName',
  '/credentials',
  '/topology',
  '/applications',
  '/tokens',
  '/audit',
  '/health',
  '/doctor',
] as const;

/** The built scripts, styles and images (content-hashed names), answered from memory. */
export const CONSOLE_ASSET_ROUTE = '/assets/:file';

/** Every console route pattern: all public (caller-auth.ts). */
export const CONSOLE_ROUTES: readonly string[] = [...CONSOLE_PAGES, CONSOLE_ASSET_ROUTE];

/**
 * default-src 'self' and nothing looser: scripts and styles only from the built files (no
 * 'unsafe-inline', no 'unsafe-eval'), API calls to this origin only, no plugins, no framing.
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.json': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

interface BuiltFile {
  body: Buffer;
  type: string;
}

export interface ConsoleFiles {
  index: Buffer | undefined;
  assets: Map<string, BuiltFile>;
}

/** dist/console next to dist/src (this file is dist/src/http/management/console-static.js). */
export function defaultConsoleDir(): string {
  return fileURLToPath(new URL('../../../console/', import.meta.url));
}

/** Reads index.html and the regular files directly in assets/ (no subfolders, no links). */
export function loadConsoleFiles(dir: string): ConsoleFiles {
  const assets = new Map<string, BuiltFile>();
  let index: Buffer | undefined;
  try {
    index = fs.readFileSync(path.join(dir, 'index.html'));
  } catch {
    return { index: undefined, assets };
  }
  const assetDir = path.join(dir, 'assets');
  let names: fs.Dirent[] = [];
  try {
    names = fs.readdirSync(assetDir, { withFileTypes: true });
  } catch {
    /* a build without assets */
  }
  for (const entry of names) {
    if (!entry.isFile()) continue;
    const type = CONTENT_TYPES[path.extname(entry.name).toLowerCase()];
    if (!type) continue; // source maps and anything unexpected stay on disk
    assets.set(entry.name, { body: fs.readFileSync(path.join(assetDir, entry.name)), type });
  }
  return { index, assets };
}

function secureHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', CONSOLE_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    .header('cross-origin-opener-policy', 'same-origin');
}

export async function consoleRoutes(app: ManagementApp, files: ConsoleFiles = loadConsoleFiles(defaultConsoleDir())): Promise<void> {
  const page = async (_req: unknown, reply: FastifyReply) => {
    secureHeaders(reply).header('cache-control', 'no-cache');
    if (!files.index) {
      return reply.code(503).type('text/plain; charset=utf-8').send('The console is not built: run `npm run build` (it builds console/ into dist/console/).\n');
    }
    return reply.type('text/html; charset=utf-8').send(files.index);
  };
  for (const url of CONSOLE_PAGES) app.get(url, { schema: { hide: true } }, page);

  app.get<{ Params: { file: string } }>(CONSOLE_ASSET_ROUTE, { schema: { hide: true } }, async (req, reply) => {
    secureHeaders(reply);
    const file = files.assets.get(req.params.file);
    if (!file) return reply.code(404).send({ code: 'NOT_FOUND', message: 'no such console file' });
    // Names carry a content hash: a new build has new names, so they can be kept for good.
    return reply.header('cache-control', 'public, max-age=31536000, immutable').type(file.type).send(file.body);
  });
}
