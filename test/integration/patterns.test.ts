import { expect } from 'chai';
import { startTestAirlock, waitFor } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { script } from '../support/mcpHarness.js';

/** The glob that took the hand-written compiler 35 s on one 40-character name. */
const BACKTRACKING_GLOB = '*a*a*a*a*a*a*a*a*a*ab';
/** Exponential in a backtracking engine on a run of `a`s that ends in `b`: 2^60 paths on this line. */
const CATASTROPHIC_REGEX = '(a+)+$';

interface ToolCall {
  toolName: string;
  status: string;
  output: string;
}

/** Runs one task whose scripted model makes `calls` in order; its tool calls once it has finished. */
async function runCalls(airlock: TestAirlock, calls: [string, Record<string, unknown>][]): Promise<ToolCall[]> {
  const res = await airlock.api('/tasks', { method: 'POST', json: { message: script(...calls) } });
  expect(res.status, res.text).to.equal(201);
  const task = await waitFor(async () => {
    const { body } = await airlock.api(`/tasks/${res.body.data.id}`);
    return ['completed', 'failed'].includes(body?.data?.status) ? body.data : undefined;
  }, 'the task to finish', 110_000);
  expect(task.status, JSON.stringify(task.error)).to.equal('completed');
  return task.output.toolCalls;
}

/** A shell command that writes `files` (path → content) under /workspace. */
function writeFiles(files: Record<string, string>): [string, Record<string, unknown>] {
  const lines = Object.entries(files).map(([path, content]) => `mkdir -p "$(dirname '${path}')" && printf '%s' '${content}' > '${path}'`);
  return ['run_shell_command', { command: lines.join(' && ') }];
}

// Through the real workspace server in the real sandbox (bubblewrap), started by a real Airlock.
// The timeouts are generous so that an unbounded pattern fails a test by timeout, not hangs the suite.
describe('Model-chosen patterns in the sandboxed workspace server', function () {
  this.timeout(120_000);
  let airlock: TestAirlock;

  before(async () => {
    airlock = await startTestAirlock();
  });

  after(async () => {
    await airlock?.stop();
  });

  it('glob: a backtracking pattern against long names returns at once, with the right files', async () => {
    const [, glob] = await runCalls(airlock, [
      writeFiles({ [`${'a'.repeat(40)}`]: '', [`dir/${'a'.repeat(60)}`]: '', 'dir/aaaaaaaaaab': '', 'xaaaaaaaaaaab': '', 'ab': '' }),
      ['glob', { pattern: `**/${BACKTRACKING_GLOB}` }],
    ]);
    expect(glob!.status, glob!.output).to.equal('success');
    expect(glob!.output.split('\n')).to.deep.equal([
      `Found 2 files matching "**/${BACKTRACKING_GLOB}" in .:`,
      'dir/aaaaaaaaaab',
      'xaaaaaaaaaaab',
    ]);
  });

  it('glob and include keep the documented syntax: **, {a,b}, classes, dot files, names at any depth', async () => {
    const [, stars, braces, classes, include] = await runCalls(airlock, [
      writeFiles({ '.env': 'X=1', 'src/.hidden/a.ts': 'const a = 1;', 'src/b.tsx': 'const b = 2;', 'src/c9.json': '{}', 'src/cx.json': '{}', '#x': '', '!y': '' }),
      ['glob', { pattern: 'src/**/*.ts' }],
      ['glob', { pattern: '{.env,src/*.{tsx,json},#x,!y}' }],
      ['glob', { pattern: 'src/c[[:digit:]].json' }],
      ['search_file_content', { pattern: 'const', include: '*.{ts,tsx}' }],
    ]);
    expect(stars!.output.split('\n').slice(1)).to.deep.equal(['src/.hidden/a.ts']);
    expect(braces!.output.split('\n').slice(1)).to.deep.equal(['!y', '#x', '.env', 'src/b.tsx', 'src/c9.json', 'src/cx.json']);
    expect(classes!.output.split('\n').slice(1)).to.deep.equal(['src/c9.json']);
    expect(include!.output.split('\n').slice(1)).to.deep.equal(['src/.hidden/a.ts:1: const a = 1;', 'src/b.tsx:1: const b = 2;']);
  });

  it('glob: a pattern whose braces expand past the bound is refused, saying why', async () => {
    const [glob] = await runCalls(airlock, [['glob', { pattern: '{a,b}'.repeat(7) }]]);
    expect(glob!.status).to.equal('error');
    expect(glob!.output).to.include('expands to more than 100 patterns');
  });

  it('search_file_content: a catastrophic regex ends at the time limit with a clear error; the server goes on searching', async () => {
    const started = Date.now();
    const [, stuck, normal] = await runCalls(airlock, [
      writeFiles({ 'notes/one.txt': 'first line\nfunction main() {}\n', 'notes/two.txt': `${'a'.repeat(60)}b\n` }),
      ['search_file_content', { pattern: CATASTROPHIC_REGEX, path: 'notes' }],
      ['search_file_content', { pattern: 'function\\s+main|^a+b$' }],
    ]);
    const seconds = (Date.now() - started) / 1000;
    expect(stuck!.status, stuck!.output).to.equal('error');
    expect(stuck!.output).to.include('took more than its time limit of 5 s').and.include('notes/two.txt');
    expect(seconds, 'stopped at its limit').to.be.within(5, 60);
    expect(normal!.status, normal!.output).to.equal('success');
    expect(normal!.output.split('\n')).to.deep.equal([
      'Found 2 matches for /function\\s+main|^a+b$/ in .:',
      'notes/one.txt:2: function main() {}',
      `notes/two.txt:1: ${'a'.repeat(60)}b`,
    ]);
  });
});
