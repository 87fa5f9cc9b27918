import { expect } from 'chai';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installationPrefix, launchProblem, namedPaths, packageRoot, serverReadOnlyPaths } from '../../src/sandbox/serverPaths.js';

describe('serverPaths', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-server-paths-'));
    mkdirSync(join(dir, 'proj', 'build', 'deep'), { recursive: true });
    writeFileSync(join(dir, 'proj', 'package.json'), '{}');
    writeFileSync(join(dir, 'proj', 'build', 'deep', 'index.js'), '');
    mkdirSync(join(dir, 'python', 'bin'), { recursive: true });
    mkdirSync(join(dir, 'python', 'lib'));
    writeFileSync(join(dir, 'python', 'bin', 'python3.12'), '', { mode: 0o755 });
    symlinkSync(join(dir, 'python', 'bin', 'python3.12'), join(dir, 'proj', 'py'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('finds the package root of a file: the nearest folder with a marker', () => {
    expect(packageRoot(join(dir, 'proj', 'build', 'deep', 'index.js'))).to.equal(join(dir, 'proj'));
    expect(packageRoot(join(dir, 'python', 'bin', 'python3.12'))).to.equal(undefined);
  });

  it('names the command found on PATH and the absolute args, never a templated one', () => {
    const named = namedPaths({ command: 'python3.12', args: ['-m', join(dir, 'proj', 'build', 'deep', 'index.js'), '/{{mcp.DIR}}/x.js', 'rel.js'] }, join(dir, 'python', 'bin'));
    expect(named).to.deep.equal([
      { path: join(dir, 'python', 'bin', 'python3.12'), key: 'command' },
      { path: join(dir, 'proj', 'build', 'deep', 'index.js'), key: 'args[1]' },
    ]);
  });

  it('shows each named path, its real path, their package roots, the command\'s installation prefix and the server\'s own paths', () => {
    const shown = serverReadOnlyPaths([{ path: join(dir, 'proj', 'py'), key: 'command' }], ['/srv/extra']);
    expect(shown).to.have.members([join(dir, 'proj', 'py'), join(dir, 'proj'), join(dir, 'python', 'bin', 'python3.12'), join(dir, 'python'), '/srv/extra']);
    expect(installationPrefix('/usr/bin/python3')).to.equal(undefined);
    expect(installationPrefix('/home/me/.local/bin/uvx')).to.equal(undefined);
  });

  it('says which key names a path the sandbox would hide, and skips URLs and options', () => {
    const problem = launchProblem({
      launch: { command: join(dir, 'python', 'bin', 'python3.12'), args: ['--import', 'file:///nowhere/loader.mjs', '/etc/hidden-thing'] },
      pathVar: '', cwd: dir, cwdShownAs: '/workspace',
      shows: (path) => path !== '/etc/hidden-thing', keyOf: (key) => `servers.x.${key}`,
    });
    expect(problem).to.equal(undefined); // /etc/hidden-thing does not exist and is no script: nothing to say
    writeFileSync(join(dir, 'secret.txt'), '');
    const hidden = launchProblem({
      launch: { command: join(dir, 'python', 'bin', 'python3.12'), args: [join(dir, 'secret.txt')] },
      pathVar: '', cwd: dir, cwdShownAs: '/workspace',
      shows: (path) => path !== join(dir, 'secret.txt'), keyOf: (key) => `servers.x.${key}`,
    });
    expect(hidden).to.equal(`servers.x.args[0] (${join(dir, 'secret.txt')}) exists on the host, but the sandbox does not show it: add its folder to servers.x.sandbox.readOnlyPaths`);
  });
});
