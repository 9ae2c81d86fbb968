import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  CsvRecordReader,
  ImportRowReader,
  JsonLinesReader,
  MAX_RECORD_CHARS,
  csvCell,
  formatFromContentType,
  formatFromFileName,
  readImportRows,
  type DeviceImportRow,
  type ImportFormat,
  type ParsedRow,
  type ProductImportRow,
} from '../../src/core/import-formats.js';

const S1 = 'd6811788cef20bead0f700e622bd35b2';
const S2 = 'Ds1234567890abcdefABCDEF12345678';

function csvAll(text: string, cuts: number[] = []) {
  const r = new CsvRecordReader();
  const out = [];
  let prev = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    out.push(...r.push(text.slice(prev, c)));
    prev = c;
  }
  out.push(...r.push(text.slice(prev)));
  out.push(...r.end());
  return out;
}

function devices(text: string, format: ImportFormat = 'csv'): ParsedRow<DeviceImportRow>[] {
  const r = new ImportRowReader<DeviceImportRow>('devices', format);
  return [...r.push(text), ...r.end()];
}

function products(text: string, format: ImportFormat = 'jsonl'): ParsedRow<ProductImportRow>[] {
  const r = new ImportRowReader<ProductImportRow>('products', format);
  return [...r.push(text), ...r.end()];
}

async function* chunksOf(buf: Buffer, size: number) {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

describe('CsvRecordReader', () => {
  it('reads RFC 4180 quoting: commas, doubled quotes and newlines inside quotes, with the start line of each record', () => {
    const text = 'a,b,c\n"x,1","say ""hi""","two\nlines"\nlast,,\n';
    assert.deepEqual(csvAll(text), [
      { line: 1, fields: ['a', 'b', 'c'] },
      { line: 2, fields: ['x,1', 'say "hi"', 'two\nlines'] },
      { line: 4, fields: ['last', '', ''] },
    ]);
  });

  it('strips a BOM, handles CRLF (also after quoted fields), skips blank lines and a missing final newline', () => {
    const text = '\ufeffA,B\r\n\r\n"q",2\r\n   \r\n3,"4"';
    assert.deepEqual(csvAll(text), [
      { line: 1, fields: ['A', 'B'] },
      { line: 3, fields: ['q', '2'] },
      { line: 5, fields: ['3', '4'] },
    ]);
  });

  it('gives the same records however the text is split into chunks', () => {
    const text = '\ufeffProductKey,DeviceName\r\n"a,""b""\r\nc",d\n\n"",x\r\ne,"f"\n"g""",h';
    const whole = csvAll(text);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: text.length }), { maxLength: 12 }), (cuts) => {
        assert.deepEqual(csvAll(text, cuts), whole);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a quote that is never closed, naming the line', () => {
    assert.throws(() => csvAll('a,b\n1,"open\n2,3\n'), /line 2: quoted field is never closed/);
  });
});

describe('JsonLinesReader', () => {
  it('parses one value per line, skips blank lines, tolerates CRLF and BOM, reports bad JSON by line', () => {
    const r = new JsonLinesReader();
    const out = [...r.push('\ufeff{"a":1}\r\n\r\n{"b":'), ...r.push('2}\nnot json\n'), ...r.end()];
    assert.deepEqual(out.slice(0, 2), [
      { line: 1, value: { a: 1 } },
      { line: 3, value: { b: 2 } },
    ]);
    assert.equal(out[2]!.line, 4);
    assert.match(out[2]!.error!, /not valid JSON/);
  });
});

describe('record length limit', () => {
  it('stops a CSV file at a record still open past MAX_RECORD_CHARS, naming the line it starts on', () => {
    const r = new CsvRecordReader();
    assert.deepEqual(r.push('A,B\n1,2\n'), [
      { line: 1, fields: ['A', 'B'] },
      { line: 2, fields: ['1', '2'] },
    ]);
    assert.throws(
      () => r.push(`"${'x'.repeat(MAX_RECORD_CHARS)}`),
      (e: Error) => e.message === `line 3: record is longer than ${MAX_RECORD_CHARS} characters (is a closing " missing?)`,
    );
  });

  it('stops a JSON-lines file at a line longer than MAX_RECORD_CHARS, naming that line', () => {
    const r = new JsonLinesReader();
    assert.deepEqual(r.push('{"a":1}\n'), [{ line: 1, value: { a: 1 } }]);
    assert.throws(
      () => r.push(`"${'x'.repeat(MAX_RECORD_CHARS)}`),
      (e: Error) => e.message === `line 2: line is longer than ${MAX_RECORD_CHARS} characters`,
    );
  });
});

describe('ImportRowReader: devices', () => {
  it('maps the console CSV columns in any order and any letter case', () => {
    const rows = devices(`deviceSECRET,DeviceName,productkey\n${S1},dev00000,a1BenchPK01\n`);
    assert.deepEqual(rows, [{ row: { line: 2, productKey: 'a1BenchPK01', deviceName: 'dev00000', deviceSecret: S1 } }]);
  });

  it('requires a header row naming the three columns', () => {
    assert.throws(() => devices(`a1BenchPK01,dev00000,${S1}\n`), /line 1: the first row must be a header .* ProductKey, DeviceName, DeviceSecret/);
    assert.throws(() => devices('ProductKey,DeviceName\n'), /missing: DeviceSecret/);
    assert.throws(() => devices('\n\n'), /the file is empty/);
    assert.throws(() => devices('ProductKey,DeviceName,DeviceSecret,productKey\n'), /appears twice/);
  });

  it('validates each row against the spec formats and reports line numbers; valid rows still come through', () => {
    const text = [
      'ProductKey,DeviceName,DeviceSecret,IotId,Nickname',
      `a1BenchPK01,ok-device,${S1},,`,
      `a1BenchPK01,x,${S1}`, // name too short
      'a1BenchPK01,dev-short-secret,abc', // secret too short
      `a1BenchPK01,dev-bad-secret,${'x'.repeat(31)}!`, // not alphanumeric
      `a1BenchPK01,dev-long-secret,${'a'.repeat(65)}`,
      `a-b,dev-bad-pk,${S1}`,
      `a1BenchPK01,dev-bad-iotid,${S1},short`,
      `a1BenchPK01,"dev with space",${S1}`,
      `a1BenchPK01,ok-device,${S2}`, // duplicate
      `a1BenchPK01,dev-extra,${S1},,,surplus`,
      `,dev-no-pk,${S1}`,
    ].join('\n');
    const rows = devices(text);
    assert.equal(rows.length, 11);
    assert.deepEqual(rows[0], { row: { line: 2, productKey: 'a1BenchPK01', deviceName: 'ok-device', deviceSecret: S1, nickname: null } });
    const errors = rows.slice(1).map((r) => [r.error!.line, r.error!.message]);
    assert.deepEqual(
      errors.map(([l]) => l),
      [3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    );
    assert.match(errors[0]![1] as string, /deviceName must be 4-32/);
    assert.match(errors[1]![1] as string, /deviceSecret must be 8-64 alphanumerics/);
    assert.match(errors[2]![1] as string, /deviceSecret must be 8-64 alphanumerics/);
    assert.match(errors[3]![1] as string, /deviceSecret must be 8-64 alphanumerics/);
    assert.match(errors[4]![1] as string, /productKey must be 4-20 alphanumerics/);
    assert.match(errors[5]![1] as string, /iotId must be 8-64 alphanumerics/);
    assert.match(errors[6]![1] as string, /deviceName must be 4-32/);
    assert.equal(errors[7]![1], 'device a1BenchPK01/ok-device already appears on line 2');
    assert.match(errors[8]![1] as string, /row has 6 fields but the header has 5/);
    assert.equal(errors[9]![1], 'productKey is required');
  });

  it('a row that failed validation does not count as seen: a later good row of that name is accepted', () => {
    const rows = devices(`ProductKey,DeviceName,DeviceSecret\na1BenchPK01,dev00000,short\na1BenchPK01,dev00000,${S1}\n`);
    assert.ok(rows[0]!.error);
    assert.equal(rows[1]!.row?.deviceName, 'dev00000');
  });

  it('reads our JSON lines with iotId, nickname and activation, and refuses wrong types and duplicate iotIds', () => {
    const lines = [
      JSON.stringify({ productKey: 'a1TestPK001', deviceName: 'dev-001', deviceSecret: S2, iotId: 'IotId0000000000000000000000001', nickname: '客厅灯 1', activatedAt: '2024-01-31T08:00:00.000Z' }),
      JSON.stringify({ productKey: 'a1TestPK001', deviceName: 'dev-002', deviceSecret: S2, iotId: 'IotId0000000000000000000000001' }),
      JSON.stringify({ productKey: 'a1TestPK001', deviceName: 'dev-003', deviceSecret: 12345678 }),
      JSON.stringify({ productKey: 'a1TestPK001', deviceName: 'dev-004', deviceSecret: S2, activatedAt: 'yesterday' }),
      '[1,2]',
      JSON.stringify({ productKey: 'a1TestPK001', deviceName: 'dev-005', deviceSecret: S2, nickname: null, activatedAt: null, extra: 'ignored' }),
    ].join('\n');
    const rows = devices(lines, 'jsonl');
    assert.deepEqual(rows[0], {
      row: {
        line: 1,
        productKey: 'a1TestPK001',
        deviceName: 'dev-001',
        deviceSecret: S2,
        iotId: 'IotId0000000000000000000000001',
        nickname: '客厅灯 1',
        activatedAt: '2024-01-31T08:00:00.000Z',
      },
    });
    assert.equal(rows[1]!.error?.message, 'iotId IotId0000000000000000000000001 already appears on line 1');
    assert.equal(rows[2]!.error?.message, 'deviceSecret must be a string');
    assert.match(rows[3]!.error!.message, /activatedAt must be an ISO 8601 timestamp/);
    assert.equal(rows[4]!.error?.message, 'each line must be one JSON object');
    assert.deepEqual(rows[5], { row: { line: 6, productKey: 'a1TestPK001', deviceName: 'dev-005', deviceSecret: S2, nickname: null, activatedAt: null } });
  });
});

describe('ImportRowReader: products', () => {
  it('reads JSON lines with settings; absent settings stay absent (not compared on re-import)', () => {
    const rows = products(
      [
        JSON.stringify({ productKey: 'a1BenchPK01', productSecret: 'benchProductSecret01', productName: 'bench product', nodeType: 'GATEWAY', dynamicRegistration: true, deviceLimit: 1000 }),
        JSON.stringify({ productKey: 'a13FN5TplKq', productSecret: 'y7GSILD480lBSsP8', productName: 'sub devices' }),
      ].join('\n'),
    );
    assert.deepEqual(rows, [
      { row: { line: 1, productKey: 'a1BenchPK01', productSecret: 'benchProductSecret01', productName: 'bench product', nodeType: 'GATEWAY', dynamicRegistration: true, deviceLimit: 1000 } },
      { row: { line: 2, productKey: 'a13FN5TplKq', productSecret: 'y7GSILD480lBSsP8', productName: 'sub devices' } },
    ]);
  });

  it('reads timestampWindowSeconds: a number is kept, null and 0 both mean off, anything else is refused', () => {
    const base = { productSecret: 'benchProductSecret01', productName: 'bench product' };
    const rows = products(
      [
        { productKey: 'a1Window001', timestampWindowSeconds: 300 },
        { productKey: 'a1Window002', timestampWindowSeconds: null },
        { productKey: 'a1Window003', timestampWindowSeconds: 0 },
        { productKey: 'a1Window004', timestampWindowSeconds: -1 },
        { productKey: 'a1Window005', timestampWindowSeconds: 1.5 },
        { productKey: 'a1Window006', timestampWindowSeconds: 31_536_001 },
        { productKey: 'a1Window007', timestampWindowSeconds: '60' },
      ]
        .map((r) => JSON.stringify({ ...r, ...base }))
        .join('\n'),
    );
    assert.deepEqual(rows[0], { row: { line: 1, productKey: 'a1Window001', ...base, timestampWindowSeconds: 300 } });
    assert.deepEqual(rows[1], { row: { line: 2, productKey: 'a1Window002', ...base, timestampWindowSeconds: null } });
    assert.deepEqual(rows[2], { row: { line: 3, productKey: 'a1Window003', ...base, timestampWindowSeconds: null } });
    for (const r of rows.slice(3, 6)) assert.match(r.error!.message, /^timestampWindowSeconds must be a whole number from 0 to 31536000/);
    assert.deepEqual(rows[6], { row: { line: 7, productKey: 'a1Window007', ...base, timestampWindowSeconds: 60 } });
  });

  it('reads CSV with booleans as text and refuses bad settings with line numbers', () => {
    const rows = products(
      [
        'ProductKey,ProductSecret,ProductName,NodeType,DynamicRegistration,PreRegistrationFree',
        'a1BenchPK01,benchProductSecret01,bench product,gateway,TRUE,0',
        'a1BenchPK02,benchProductSecret02,bench product,ROUTER,,',
        'a1BenchPK03,benchProductSecret03,bench product,,false,true',
        'a1BenchPK04,short,bench product,,,',
        'a1BenchPK05,benchProductSecret05,ab,,,',
        'a1BenchPK01,benchProductSecret01,bench product,,,',
      ].join('\r\n'),
      'csv',
    );
    assert.deepEqual(rows[0], {
      row: { line: 2, productKey: 'a1BenchPK01', productSecret: 'benchProductSecret01', productName: 'bench product', nodeType: 'GATEWAY', dynamicRegistration: true, preRegistrationFree: false },
    });
    assert.match(rows[1]!.error!.message, /nodeType must be one of DEVICE, GATEWAY, SUB_DEVICE/);
    assert.equal(rows[2]!.error!.message, 'preRegistrationFree requires dynamicRegistration');
    assert.match(rows[3]!.error!.message, /productSecret must be 8-64 alphanumerics/);
    assert.match(rows[4]!.error!.message, /productName must be 4-30/);
    assert.equal(rows[5]!.error!.message, 'product a1BenchPK01 already appears on line 2');
    assert.deepEqual(
      rows.map((r) => r.row?.line ?? r.error!.line),
      [2, 3, 4, 5, 6, 7],
    );
  });
});

describe('readImportRows', () => {
  it('decodes UTF-8 split across chunks (multi-byte characters, BOM) and yields the same rows as whole text', async () => {
    const text = `\ufeffProductKey,DeviceName,DeviceSecret,Nickname\r\na1BenchPK01,dev00000,${S1},"温度计, 一楼"\r\n`;
    const buf = Buffer.from(text, 'utf8');
    for (const size of [1, 2, 3, 7, 64]) {
      const rows: ParsedRow<DeviceImportRow>[] = [];
      for await (const batch of readImportRows<DeviceImportRow>(chunksOf(buf, size), 'devices', 'csv')) rows.push(...batch);
      assert.deepEqual(rows, [{ row: { line: 2, productKey: 'a1BenchPK01', deviceName: 'dev00000', deviceSecret: S1, nickname: '温度计, 一楼' } }], `chunk size ${size}`);
    }
  });

  it('refuses a file that is not UTF-8', async () => {
    const latin1 = Buffer.from('ProductKey,DeviceName,DeviceSecret,Nickname\na1BenchPK01,dev00000,' + S1 + ',caf\xe9\n', 'latin1');
    await assert.rejects(async () => {
      for await (const _ of readImportRows(chunksOf(latin1, 16), 'devices', 'csv')) {
        /* drain */
      }
    }, /not valid UTF-8/);
  });
});

describe('format detection', () => {
  it('from content type and file name', () => {
    assert.equal(formatFromContentType('text/csv; charset=utf-8'), 'csv');
    assert.equal(formatFromContentType('application/x-ndjson'), 'jsonl');
    assert.equal(formatFromContentType('application/json'), undefined);
    assert.equal(formatFromFileName('fleet.CSV'), 'csv');
    assert.equal(formatFromFileName('fleet.jsonl'), 'jsonl');
    assert.equal(formatFromFileName('fleet.ndjson'), 'jsonl');
    assert.equal(formatFromFileName('fleet.txt'), undefined);
  });
});

describe('CSV formula injection (issue 11 item 15)', () => {
  it('csvCell prefixes every formula trigger (=, +, -, @, tab, CR) with a quote, and quotes what needs it', () => {
    assert.equal(csvCell('=1+1'), "'=1+1");
    assert.equal(csvCell('+41'), "'+41");
    assert.equal(csvCell('-dev-0001'), "'-dev-0001");
    assert.equal(csvCell('@SUM(A1)'), "'@SUM(A1)");
    assert.equal(csvCell('\tcmd'), "'\tcmd");
    assert.equal(csvCell('\rcmd'), '"\'\rcmd"');
    assert.equal(csvCell('=HYPERLINK("http://x","y")'), '"\'=HYPERLINK(""http://x"",""y"")"');
    assert.equal(csvCell('dev-0001'), 'dev-0001');
    assert.equal(csvCell('a,b'), '"a,b"');
    assert.equal(csvCell(S1), S1);
  });

  it('export -> import: a neutralised DeviceName reads back as the name; free text keeps its quote', () => {
    const csv = `ProductKey,DeviceName,DeviceSecret,Nickname\na1BenchPK01,${csvCell('-dev-0001')},${S1},'=not-a-name\na1BenchPK01,${csvCell('@dev-0002')},${S2},\n`;
    const rows = devices(csv);
    assert.deepEqual(
      rows.map((r) => [r.row?.deviceName, r.row?.nickname, r.error?.message]),
      [
        ['-dev-0001', "'=not-a-name", undefined],
        ['@dev-0002', null, undefined],
      ],
    );
    // A quote not followed by a trigger is not ours: the name stays invalid.
    const bad = devices(`ProductKey,DeviceName,DeviceSecret\na1BenchPK01,'dev-0003,${S1}\n`);
    assert.match(bad[0]!.error?.message ?? '', /DeviceName|deviceName/);
  });
});
