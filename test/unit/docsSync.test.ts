import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ERROR_STATUS } from '../../src/errors.js';
import type { ErrorCode } from '../../src/errors.js';
import { EVENT_TYPES, REPLAY_EVENT_TYPES } from '../../src/runtime/events/events.js';

// The docs are executable lists: these tests fail when the code and docs/*.md drift apart.

function read(relative: string): string {
  return readFileSync(fileURLToPath(new URL(`../../${relative}`, import.meta.url)), 'utf8');
}

/** Splits a Markdown table row into cells; `\|` and pipes inside `code spans` do not split. */
function splitRow(line: string): string[] {
  const body = line.trim().replace(/^\|/, '').replace(/\|$/, '');
  const cells: string[] = [];
  let cell = '';
  let inCode = false;
  for (let i = 0; i < body.length; i++) {
    const ch = body[i]!;
    if (ch === '\\' && body[i + 1] === '|') {
      cell += '|';
      i++;
    } else if (ch === '`') {
      inCode = !inCode;
      cell += ch;
    } else if (ch === '|' && !inCode) {
      cells.push(cell.trim());
      cell = '';
    } else {
      cell += ch;
    }
  }
  cells.push(cell.trim());
  return cells;
}

/** A cell's text without code-span backticks and emphasis. */
function plain(cell: string): string {
  return cell.replace(/`/g, '').replace(/\*\*/g, '').trim();
}

/**
 * The body rows of the first table whose header starts with `header` (case-insensitive, backticks
 * ignored). Throws when there is no such table, so a renamed header fails loudly.
 */
function findTable(markdown: string, header: string[]): string[][] {
  const lines = markdown.split(/\r?\n/);
  const wanted = header.map((h) => h.toLowerCase());
  for (let i = 0; i < lines.length - 1; i++) {
    const line = lines[i]!.trim();
    if (!line.startsWith('|')) continue;
    const cells = splitRow(line).map((c) => plain(c).toLowerCase());
    if (!wanted.every((h, index) => cells[index] === h)) continue;
    if (!/^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$/.test(lines[i + 1]!.trim())) continue;
    const rows: string[][] = [];
    for (let j = i + 2; j < lines.length && lines[j]!.trim().startsWith('|'); j++) rows.push(splitRow(lines[j]!));
    return rows;
  }
  throw new Error(`no table with header | ${header.join(' | ')} |`);
}

function duplicates(values: string[]): string[] {
  return values.filter((value, index) => values.indexOf(value) !== index);
}

describe('docs stay in sync with the code', () => {
  const apiDoc = read('docs/API.md');
  const configDoc = read('docs/configuration.md');

  describe('the table parser', () => {
    it('keeps escaped pipes and pipes inside code spans in their cell', () => {
      expect(splitRow('| `a|b` | c \\| d | e |')).to.deep.equal(['`a|b`', 'c | d', 'e']);
    });

    it('finds a table by its header and reads its rows', () => {
      const md = 'text\n\n| Name | `Value` | x |\n|---|:---:|---|\n| a | 1 | - |\n| b | 2 | - |\n\nafter\n| a | 3 |';
      expect(findTable(md, ['name', 'value'])).to.deep.equal([['a', '1', '-'], ['b', '2', '-']]);
      expect(() => findTable(md, ['nope'])).to.throw(/no table/);
    });
  });

  describe('docs/API.md error table', () => {
    const rows = findTable(apiDoc, ['code', 'HTTP', 'when']);
    const documented = rows.map((row) => ({ code: plain(row[0] ?? ''), status: Number(plain(row[1] ?? '')) }));

    it('lists every ErrorCode of ERROR_STATUS with the same HTTP status', () => {
      for (const [code, status] of Object.entries(ERROR_STATUS) as [ErrorCode, number][]) {
        const row = documented.find((d) => d.code === code);
        expect(row, `${code} is missing from the error table`).to.not.equal(undefined);
        expect(row!.status, `HTTP status of ${code}`).to.equal(status);
      }
    });

    it('documents no code that is not in ERROR_STATUS, and none twice', () => {
      const codes = documented.map((d) => d.code);
      expect(codes.filter((code) => !(code in ERROR_STATUS)), 'codes documented but not in ERROR_STATUS').to.deep.equal([]);
      expect(duplicates(codes), 'codes documented twice').to.deep.equal([]);
    });

    it('has a description for every code', () => {
      for (const row of rows) expect(plain(row[2] ?? ''), `"when" of ${row[0]}`).to.not.equal('');
    });
  });

  describe('docs/API.md event table', () => {
    // The first cell names one event, or several separated by "/" (each may be in backticks).
    const documented = findTable(apiDoc, ['event', 'payload']).flatMap((row) => plain(row[0] ?? '').split('/').map((name) => name.trim()).filter(Boolean));
    const implemented: string[] = [...EVENT_TYPES, ...REPLAY_EVENT_TYPES];

    it('documents every EVENT_TYPES and REPLAY_EVENT_TYPES entry', () => {
      expect(implemented.filter((type) => !documented.includes(type)), 'event types missing from the table').to.deep.equal([]);
    });

    it('documents no event type the code does not have, and none twice', () => {
      expect(documented.filter((type) => !implemented.includes(type)), 'documented but not in events.ts').to.deep.equal([]);
      expect(duplicates(documented), 'event types documented twice').to.deep.equal([]);
    });
  });

  describe('docs/API.md routes', () => {
    const METHOD = '(get|post|put|patch|delete)';
    const routesSource = read('src/api/taskRoutes.ts');
    const appSource = read('src/api/app.ts');
    const healthSource = read('src/api/health.ts');
    const prefix = /new Router\(\s*\{\s*prefix:\s*'([^']+)'/.exec(appSource)?.[1] ?? '';
    const registered = [
      ...[...routesSource.matchAll(new RegExp(`\\brouter\\.${METHOD}\\(\\s*'([^']+)'`, 'g'))].map((m) => `${m[1]!.toUpperCase()} ${prefix}${m[2]}`),
      ...[...healthSource.matchAll(/\b[A-Z]+_PATH = '([^']+)'/g)].map((m) => `GET ${m[1]}`),
    ];
    const documented = findTable(apiDoc, ['method', 'path']).map((row) => `${plain(row[0] ?? '').toUpperCase()} ${plain(row[1] ?? '')}`);

    it('finds the routes in the source (sanity check of the grep)', () => {
      expect(prefix).to.equal('/api/v1');
      expect(registered).to.include('POST /api/v1/tasks');
      expect(registered).to.include('GET /healthz');
      expect(registered).to.include('GET /readyz');
    });

    it('documents every registered route in the route table', () => {
      expect(registered.filter((route) => !documented.includes(route)), 'routes missing from docs/API.md').to.deep.equal([]);
    });

    it('documents no route that is not registered, and none twice', () => {
      expect(documented.filter((route) => !registered.includes(route)), 'documented but not registered').to.deep.equal([]);
      expect(duplicates(documented), 'routes documented twice').to.deep.equal([]);
    });

    it('has a section for every registered route', () => {
      const headings = apiDoc.split(/\r?\n/).filter((line) => /^#{2,4}\s/.test(line));
      for (const route of registered) {
        expect(headings.some((heading) => heading.includes(` ${route} `) || heading.endsWith(` ${route}`)), `a heading for ${route}`).to.equal(true);
      }
    });
  });

  describe('docs/configuration.md environment variables', () => {
    const source = read('src/config.ts');
    const NAME = '([A-Z][A-Z0-9_]*)';
    // Read directly (env.X, env['X']) or through a local helper that reads env[name] (int('PORT', …)).
    // The read may be in the body or a parameter's default (`raw = env[name]`).
    const helpers = [...source.matchAll(/const\s+(\w+)\s*=\s*\(\s*(\w+)\s*:(?:[^)]*?|[^)]*\)[^{]*=>\s*\{[^}]*?)\benv\[\s*(\w+)\s*\]/g)]
      .filter((m) => m[2] === m[3])
      .map((m) => m[1]!);
    const readVars = new Set<string>([
      ...[...source.matchAll(new RegExp(`\\benv\\.${NAME}\\b`, 'g'))].map((m) => m[1]!),
      ...[...source.matchAll(new RegExp(`\\benv\\[\\s*['"]${NAME}['"]\\s*\\]`, 'g'))].map((m) => m[1]!),
      ...helpers.flatMap((helper) => [...source.matchAll(new RegExp(`\\b${helper}\\(\\s*['"]${NAME}['"]`, 'g'))].map((m) => m[1]!)),
    ]);
    const table = findTable(configDoc, ['variable', 'default', 'meaning']).map((row) => plain(row[0] ?? ''));

    it('finds the variables in src/config.ts (sanity check of the grep)', () => {
      expect(helpers, 'helpers that read env[name]').to.not.be.empty;
      expect([...readVars]).to.include.members(['PORT', 'HOST', 'AIRLOCK_DATA_DIR', 'AIRLOCK_CONFIG', 'ANTHROPIC_API_KEY']);
    });

    it('documents every variable the config reads in the environment table', () => {
      expect([...readVars].filter((name) => !table.includes(name)), 'variables missing from docs/configuration.md').to.deep.equal([]);
    });

    it('lists no variable in the table that the config does not read, and none twice', () => {
      expect(table.filter((name) => !readVars.has(name)), 'documented but not read by src/config.ts').to.deep.equal([]);
      expect(duplicates(table), 'variables documented twice').to.deep.equal([]);
    });
  });
});
