/**
 * The console's two catalogues (console/src/i18n/en.json, zh.json) hold the same keys, no empty
 * text, the same {placeholders} per key; every t('key') in console/src exists; and every doctor
 * finding code the server can answer has a message and a hint in both languages.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ErrorKinds } from '../../src/core/errors.js';
import { DOCTOR_FINDING_CODES, finding, type DoctorFindingCode } from '../../src/core/doctor.js';

// dist/test/console/ -> the repository root.
const root = fileURLToPath(new URL('../../../', import.meta.url));
const src = path.join(root, 'console/src');
const read = (lang: string): Record<string, string> => JSON.parse(fs.readFileSync(path.join(src, 'i18n', `${lang}.json`), 'utf8'));

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return /\.(ts|tsx)$/.test(e.name) && e.name !== 'api-types.ts' ? [p] : [];
  });
}

const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

describe('console catalogues', () => {
  const en = read('en');
  const zh = read('zh');

  it('English and Chinese have the same keys, none empty, the same placeholders', () => {
    assert.deepEqual(Object.keys(zh).sort(), Object.keys(en).sort());
    for (const [k, v] of Object.entries(en)) {
      assert.ok(v.trim() !== '', `en ${k} is empty`);
      assert.ok(zh[k]!.trim() !== '', `zh ${k} is empty`);
      assert.deepEqual(placeholders(zh[k]!), placeholders(v), `placeholders of ${k}`);
    }
    assert.ok(Object.keys(en).length > 300, 'the catalogue was read');
  });

  it("every t('key') used in console/src exists in the catalogues", () => {
    const files = sourceFiles(src);
    assert.ok(files.length > 15, 'the source was found');
    const used = new Set<string>();
    for (const f of files) {
      const text = fs.readFileSync(f, 'utf8');
      for (const m of text.matchAll(/\bt\(\s*'([^']+)'/g)) used.add(m[1]!);
      // Keys named in lookup tables (status, verdict, live state...): 'area.word' literals typed as Key.
      for (const m of text.matchAll(/:\s*'((?:status|live|audit\.result|doctor\.verdict|doctor\.severity|health\.rotation|health\.clusterMode|health\.redis)\.[A-Za-z]+)'/g)) used.add(m[1]!);
    }
    assert.ok(used.size > 250, `found ${used.size} keys in use`);
    const missing = [...used].filter((k) => !(k in en));
    assert.deepEqual(missing, []);
  });

  it('every doctor finding code has a message and a hint in both languages', () => {
    assert.ok(DOCTOR_FINDING_CODES.length > 20);
    for (const code of DOCTOR_FINDING_CODES) {
      for (const part of ['message', 'hint']) {
        const key = `doctor.code.${code}.${part}`;
        assert.ok(en[key], `en ${key}`);
        assert.ok(zh[key], `zh ${key}`);
      }
    }
  });

  it('every management API error code has a text in both languages (field variants keep the {field} placeholder)', () => {
    const codes = Object.keys(ErrorKinds);
    assert.ok(codes.length > 20, 'the codes were read');
    for (const code of codes) {
      assert.ok(en[`error.${code}`], `en error.${code}`);
      assert.ok(zh[`error.${code}`], `zh error.${code}`);
      assert.ok(/[\u4e00-\u9fff]/.test(zh[`error.${code}`]!), `zh error.${code} is Chinese: ${zh[`error.${code}`]}`);
      assert.ok(!zh[`error.${code}`]!.includes('{message}'), `zh error.${code} does not embed the English server message`);
    }
    for (const key of Object.keys(en).filter((k) => /^error\.[A-Z_]+\.field$/.test(k))) {
      assert.ok(codes.includes(key.split('.')[1]!), `${key} names a real code`);
      assert.ok(zh[key]!.includes('{field}'), `${key} names the field`);
    }
  });

  it('no Chinese entry is left in English (every zh text differs from en or is a name/code)', () => {
    const same = Object.keys(en).filter((k) => en[k] === zh[k] && /[a-z]{4,}\s+[a-z]{3,}/.test(en[k]!));
    assert.deepEqual(same, []);
  });

  it("the English doctor texts say what the server says (same words for the same params), variants included", () => {
    const fill = (text: string, params: Record<string, string>) => text.replace(/\{(\w+)\}/g, (_m, k: string) => params[k] ?? `{${k}}`);
    const variants: Record<string, Record<string, string>> = {
      'sign-mismatch.product': { secret: 'ProductSecret' },
      'timestamp-outside-window.noSkew': {},
      'last-login-ok.withSource': {},
      'wrong-node-type.noDetail': {},
    };
    const keys = Object.keys(en).filter((k) => k.startsWith('doctor.code.') && k.endsWith('.message'));
    assert.ok(keys.length >= DOCTOR_FINDING_CODES.length);
    for (const key of keys) {
      const name = key.slice('doctor.code.'.length, -'.message'.length);
      const code = (name.includes('.') ? name.slice(0, name.indexOf('.')) : name) as DoctorFindingCode;
      assert.ok(DOCTOR_FINDING_CODES.includes(code), `${name} is a code the server has`);
      // Every placeholder gets a recognisable value; the variant's own params decide its wording.
      const params: Record<string, string> = { ...(variants[name] ?? {}) };
      for (const m of (en[key]! + en[`doctor.code.${name}.hint`]!).matchAll(/\{(\w+)\}/g)) params[m[1]!] ??= `<${m[1]}>`;
      if (code === 'sign-mismatch' && !params.secret) params.secret = 'DeviceSecret';
      const f = finding(code, params);
      assert.equal(fill(en[key]!, params), f.message, `${name}.message`);
      assert.equal(fill(en[`doctor.code.${name}.hint`]!, params), f.hint, `${name}.hint`);
    }
  });
});
