import { expect } from 'chai';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { argsData, BwrapSandbox, bwrapStages, HOST_ENV } from '../../src/sandbox/bwrap.js';
import { SandboxLayouts, sandboxLayout } from '../../src/sandbox/bwrapLayout.js';
import type { BwrapLayout } from '../../src/sandbox/bwrapLayout.js';
import { WORKSPACE_MOUNT } from '../../src/sandbox/workspaces.js';

const LAYOUT: BwrapLayout = {
  dirs: ['/srv', '/srv/airlock'],
  readOnly: ['/usr', '/etc', '/srv/airlock/code'],
  symlinks: [{ path: '/bin', target: 'usr/bin' }],
  hiddenDirs: ['/etc/ssl/private'],
  hiddenFiles: ['/etc/shadow'],
};
const USER = { uid: 61000, gid: 61000, setpriv: '/usr/bin/setpriv' };

/** The values that follow each occurrence of `option` (one or two, as the option takes). */
function values(args: string[], option: string, arity: number): string[][] {
  const out: string[][] = [];
  args.forEach((arg, index) => {
    if (arg === option) out.push(args.slice(index + 1, index + 1 + arity));
  });
  return out;
}

describe('bwrapStages', () => {
  const request = { workspaceDir: '/srv/airlock/data/workspaces/t1', cwd: '/srv/airlock/data/workspaces/t1', network: 'allow' as const, env: { REGION: 'eu', LD_PRELOAD: '/workspace/x.so' } };

  it('makes every namespace but the network (and the user, when it drops to one itself) in the outer stage', () => {
    const { outer } = bwrapStages(LAYOUT, request, USER);
    expect(outer).to.include.members(['--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup', '--die-with-parent', '--new-session']);
    expect(outer).to.not.include('--unshare-net');
    expect(outer).to.not.include('--unshare-user');
    expect(bwrapStages(LAYOUT, request, undefined).outer).to.include('--unshare-user');
  });

  it('runs the inner stage in a user namespace that cannot make more, without capabilities, /proc/sys read-only', () => {
    const { inner } = bwrapStages(LAYOUT, request, USER);
    expect(inner).to.include.members(['--unshare-user', '--disable-userns']);
    expect(values(inner, '--cap-drop', 1)).to.deep.equal([['ALL']]);
    expect(values(inner, '--ro-bind-try', 2)).to.deep.include(['/proc/sys', '/proc/sys']);
    expect(values(inner, '--dev-bind', 2)).to.deep.equal([['/', '/']]);
  });

  it('sets the task\'s environment in the inner stage only, on a clear one', () => {
    const { outer, inner } = bwrapStages(LAYOUT, request, USER);
    expect(outer).to.not.include('--setenv');
    expect(inner.indexOf('--clearenv')).to.be.lessThan(inner.indexOf('--setenv'));
    expect(values(inner, '--setenv', 2)).to.deep.equal([['REGION', 'eu'], ['LD_PRELOAD', '/workspace/x.so']]);
  });

  it('adds a network namespace of its own (loopback only) when the network is denied', () => {
    expect(bwrapStages(LAYOUT, { ...request, network: 'deny' }, USER).outer).to.include('--unshare-net');
  });

  it('makes the parents, shows the layout read-only, hides the private entries over it, then binds the workspace read-write', () => {
    const { outer } = bwrapStages(LAYOUT, request, USER);
    expect(values(outer, '--dir', 1)).to.deep.equal([['/srv'], ['/srv/airlock']]);
    expect(values(outer, '--ro-bind', 2)).to.deep.equal([['/usr', '/usr'], ['/etc', '/etc'], ['/srv/airlock/code', '/srv/airlock/code'], ['/dev/null', '/etc/shadow']]);
    expect(values(outer, '--symlink', 2)).to.deep.equal([['usr/bin', '/bin']]);
    expect(values(outer, '--tmpfs', 1)).to.deep.equal([['/tmp'], ['/etc/ssl/private']]);
    expect(values(outer, '--bind', 2)).to.deep.equal([[request.workspaceDir, WORKSPACE_MOUNT]]);
    expect(values(outer, '--remount-ro', 1)).to.deep.equal([['/etc/ssl/private'], ['/']]);
    // bubblewrap mounts in order: each mask must come after the bind it covers, the workspace last.
    const at = (option: string, value: string) => outer.findIndex((arg, index) => arg === option && outer[index + 1] === value);
    expect(at('--dir', '/srv/airlock')).to.be.lessThan(at('--ro-bind', '/srv/airlock/code'));
    expect(at('--ro-bind', '/dev/null')).to.be.greaterThan(at('--ro-bind', '/etc'));
    expect(at('--bind', request.workspaceDir)).to.be.greaterThan(at('--tmpfs', '/etc/ssl/private'));
    expect(values(outer, '--proc', 1)).to.deep.equal([['/proc']]);
    expect(values(outer, '--dev', 1)).to.deep.equal([['/dev']]);
  });

  it('starts in /workspace, or in the matching directory under it', () => {
    expect(values(bwrapStages(LAYOUT, request, USER).inner, '--chdir', 1)).to.deep.equal([['/workspace']]);
    expect(values(bwrapStages(LAYOUT, { ...request, cwd: `${request.workspaceDir}/srv/tools` }, USER).inner, '--chdir', 1)).to.deep.equal([['/workspace/srv/tools']]);
  });

  it('refuses a working directory outside the workspace', () => {
    expect(() => bwrapStages(LAYOUT, { ...request, cwd: '/srv/airlock/data' }, USER)).to.throw(/outside the workspace/);
  });
});

describe('argsData', () => {
  it('ends every argument with a NUL', () => {
    expect(argsData(['--setenv', 'A', 'b c']).toString()).to.equal('--setenv\0A\0b c\0');
  });

  it('refuses a value with a NUL in it, which would smuggle in an option of the caller\'s', () => {
    expect(() => argsData(['--setenv', 'A', 'x\0--bind\0/\0/host'])).to.throw(/NUL/);
  });
});

describe('BwrapSandbox#prepare()', () => {
  const request = { command: 'node', args: ['server.js', '--token', 'from-config'], env: { SECRET: 's3cr3t-value', LD_PRELOAD: '/workspace/x.so' }, workspaceDir: '/srv/data/workspaces/t1', cwd: '/srv/data/workspaces/t1', network: 'allow' as const };

  it('gives the host processes a fixed environment and a command line without the task\'s values or the workspace path', async () => {
    const launch = await new BwrapSandbox('/usr/bin/bwrap', SandboxLayouts.fixed(LAYOUT), undefined, USER).prepare(request);
    expect(launch.env).to.deep.equal(HOST_ENV);
    expect(launch.cwd).to.equal('/');
    const commandLine = [launch.command, ...launch.args].join(' ');
    expect(commandLine).to.equal('/usr/bin/bwrap --args 3 -- /usr/bin/setpriv --reuid=61000 --regid=61000 --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs -- /usr/bin/bwrap --args 4 -- node server.js --token from-config');
    const [outer, inner] = launch.fdInputs!.map((data) => data.toString().split('\0'));
    expect(outer).to.include(request.workspaceDir).and.not.include('s3cr3t-value');
    expect(inner).to.include('s3cr3t-value').and.include('LD_PRELOAD');
  });

  it('without a user to drop to, runs the inner stage straight from the outer one', async () => {
    const launch = await new BwrapSandbox('/usr/bin/bwrap', SandboxLayouts.fixed(LAYOUT)).prepare(request);
    expect(launch.args.slice(0, 7)).to.deep.equal(['--args', '3', '--', '/usr/bin/bwrap', '--args', '4', '--']);
  });
});

function statOrUndefined(path: string) {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

describe('sandboxLayout', () => {
  let dir: string;
  beforeEach(() => {
    dir = realpathSync(mkdtempSync(join(tmpdir(), 'airlock-layout-')));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('shows the system, Node.js and Airlock\'s code read-only, parents before children', () => {
    const layout = sandboxLayout({ dataDir: join(dir, 'data'), readOnlyPaths: [] });
    const shown = [...layout.readOnly, ...layout.symlinks.map((link) => link.path)];
    expect(shown).to.include.members(['/usr', '/etc']);
    expect(shown.some((path) => path === '/bin')).to.equal(true);
    expect(layout.readOnly.some((path) => realpathSync(process.execPath).startsWith(path))).to.equal(true);
    expect(layout.readOnly.some((path) => realpathSync(new URL('../../package.json', import.meta.url)).startsWith(path))).to.equal(true);
    const depth = (path: string) => path.split('/').length;
    expect(layout.readOnly.map(depth)).to.deep.equal(layout.readOnly.map(depth).sort((a, b) => a - b));
  });

  it('shows a directory that holds the data directory and the config file entry by entry, naming neither', () => {
    mkdirSync(join(dir, 'data'));
    mkdirSync(join(dir, 'tools', 'bin'), { recursive: true });
    writeFileSync(join(dir, 'airlock.config.json'), '{}');
    writeFileSync(join(dir, 'notes.txt'), 'hi');
    symlinkSync('tools/bin', join(dir, 'bin'));
    const layout = sandboxLayout({ dataDir: join(dir, 'data'), configPath: join(dir, 'airlock.config.json'), readOnlyPaths: [dir] });
    expect(layout.readOnly.filter((path) => path.startsWith(dir))).to.deep.equal([join(dir, 'notes.txt'), join(dir, 'tools')]);
    expect(layout.dirs).to.include(dir);
    expect(layout.symlinks).to.deep.include({ path: join(dir, 'bin'), target: 'tools/bin' });
    const everything = JSON.stringify(layout);
    expect(everything).to.not.include(join(dir, 'data'));
    expect(everything).to.not.include('airlock.config.json');
  });

  it('makes every parent of a shown path that nothing shown provides, parents first', () => {
    mkdirSync(join(dir, 'a', 'b'), { recursive: true });
    const layout = sandboxLayout({ dataDir: join(dir, 'data'), readOnlyPaths: [join(dir, 'a', 'b')] });
    const parents = layout.dirs.filter((path) => path.startsWith(dir) || dir.startsWith(path));
    expect(parents.slice(-2)).to.deep.equal([dir, join(dir, 'a')]);
    expect(layout.dirs).to.not.include('/usr');
  });

  it('hides the entries of /etc that other users may not read, such as /etc/shadow', () => {
    const layout = sandboxLayout({ dataDir: join(dir, 'data'), readOnlyPaths: [] });
    for (const path of [...layout.hiddenDirs, ...layout.hiddenFiles]) {
      expect(path.startsWith('/etc/'), path).to.equal(true);
      expect(statSync(path).mode & 0o004, `${path} is readable by others`).to.equal(0);
    }
    const shadow = statOrUndefined('/etc/shadow');
    if (shadow && (shadow.mode & 0o004) === 0) expect(layout.hiddenFiles).to.include('/etc/shadow');
  });

  it('has nothing to hide when the data directory and config file are not shown anyway', () => {
    mkdirSync(join(dir, 'data'));
    writeFileSync(join(dir, 'airlock.config.json'), '{}');
    const layout = sandboxLayout({ dataDir: join(dir, 'data'), configPath: join(dir, 'airlock.config.json'), readOnlyPaths: [] });
    expect(JSON.stringify(layout)).to.not.include(dir);
  });
});
