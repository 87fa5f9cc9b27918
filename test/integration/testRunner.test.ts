import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MOCHA = createRequire(import.meta.url).resolve('mocha/bin/mocha.js');

/** The files of the tests that mocha, with the project's own configuration, would run for these arguments. */
async function filesRun(args: string[]): Promise<string[]> {
  const { stdout } = await promisify(execFile)(process.execPath, [MOCHA, '--dry-run', '--reporter', 'json', ...args], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
  const report = JSON.parse(stdout) as { tests: Array<{ file: string }> };
  return report.tests.map((test) => test.file.slice(ROOT.length));
}

describe('The test command (.mocharc.cjs)', function () {
  this.timeout(120_000);

  it('runs only the file named on the command line, an option\'s value not taken for a file', async () => {
    const files = await filesRun(['--timeout', '5000', '-g', 'name', 'test/unit/toolNames.test.ts']);
    expect(files).to.have.length.above(0);
    expect(new Set(files)).to.deep.equal(new Set(['test/unit/toolNames.test.ts']));
  });

  it('runs the whole suite when no file is named', async () => {
    const files = new Set(await filesRun([]));
    expect(files).to.include('test/unit/toolNames.test.ts').and.include('test/integration/testRunner.test.ts');
    expect(files.size).to.be.above(20);
  });
});
