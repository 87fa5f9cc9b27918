import { expect } from 'chai';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

/**
 * The rooms of src/runtime/, lowest first: a room imports only rooms before it (and itself), so
 * the one-way rule of shared/ARCHITECTURE.md holds inside the runtime as it does between folders.
 */
const RUNTIME_ROOMS = ['security', 'events', 'tools', 'approvals', 'agents', 'runs', 'tasks'];
/** Folders below the runtime: they never import it, nor the faces above it. */
const BELOW_RUNTIME = ['mcp', 'model', 'store', 'sandbox'];

interface Edge { from: string; to: string }

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) sourceFiles(path, out);
    else if (/\.(ts|mjs)$/.test(name)) out.push(path);
  }
  return out;
}

/** Every relative import (static, dynamic, type-only) of every file under src/, as src-relative paths. */
function importEdges(): Edge[] {
  const edges: Edge[] = [];
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
      const target = resolve(dirname(file), match[1]!).replace(/\.js$/, '.ts');
      edges.push({ from: relative(SRC, file), to: relative(SRC, target) });
    }
  }
  return edges;
}

const top = (path: string) => (path.includes('/') ? path.split('/')[0]! : path);
const room = (path: string) => (path.startsWith('runtime/') ? path.split('/')[1]! : undefined);
const show = (edges: Edge[]) => edges.map((e) => `${e.from} -> ${e.to}`);

describe('source layout', () => {
  const edges = importEdges();

  it('finds the imports it checks', () => {
    // A parser that found nothing would pass every rule below.
    expect(edges.length).to.be.greaterThan(300);
    expect(edges.some((e) => e.from === 'runtime/tasks/taskService.ts' && e.to === 'runtime/runs/taskRunner.ts')).to.equal(true);
  });

  it('keeps every runtime file in a room', () => {
    const loose = sourceFiles(join(SRC, 'runtime')).map((f) => relative(SRC, f)).filter((f) => !RUNTIME_ROOMS.includes(room(f)!));
    expect(loose).to.deep.equal([]);
  });

  it('lets a runtime room import only the rooms below it', () => {
    const upward = edges.filter((e) => {
      const from = room(e.from), to = room(e.to);
      return from !== undefined && to !== undefined && RUNTIME_ROOMS.indexOf(to) > RUNTIME_ROOMS.indexOf(from);
    });
    expect(show(upward)).to.deep.equal([]);
  });

  it('keeps mcp, model, store and sandbox below the runtime and the API', () => {
    const upward = edges.filter((e) => BELOW_RUNTIME.includes(top(e.from)) && ['runtime', 'api'].includes(top(e.to)));
    expect(show(upward)).to.deep.equal([]);
  });

  it('lets only the composition root and the command import the API', () => {
    const intoApi = edges.filter((e) => top(e.to) === 'api' && top(e.from) !== 'api' && !['main.ts', 'cli.ts'].includes(e.from));
    expect(show(intoApi)).to.deep.equal([]);
  });

  it('keeps the runtime from importing the API', () => {
    expect(show(edges.filter((e) => top(e.from) === 'runtime' && top(e.to) === 'api'))).to.deep.equal([]);
  });
});
