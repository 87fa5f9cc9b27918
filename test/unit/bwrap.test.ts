import { expect } from 'chai';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bwrapArgs, sandboxLayout } from '../../src/sandbox/bwrap.js';
import { WORKSPACE_MOUNT } from '../../src/sandbox/workspaces.js';
import type { BwrapLayout } from '../../src/sandbox/bwrap.js';

const LAYOUT: BwrapLayout = {
  readOnly: ['/usr', '/etc', '/srv/airlock'],
  symlinks: [{ path: '/bin', target: 'usr/bin' }],
  hiddenDirs: ['/srv/airlock/data'],
  hiddenFiles: ['/srv/airlock/airlock.config.json'],
};

/** The values that follow each occurrence of `option` (one or two, as the option takes). */
function values(args: string[], option: string, arity: number): string[][] {
  const out: string[][] = [];
  args.forEach((arg, index) => {
    if (arg === option) out.push(args.slice(index + 1, index + 1 + arity));
  });
  return out;
}

describe('bwrapArgs', () => {
  const request = { workspaceDir: '/srv/airlock/data/workspaces/t1', cwd: '/srv/airlock/data/workspaces/t1', network: 'allow' as const };

  it('isolates every namespace but the network, drops capabilities and dies with its parent', () => {
    const args = bwrapArgs(LAYOUT, request);
    expect(args).to.include.members(['--unshare-user', '--disable-userns', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup', '--die-with-parent', '--new-session']);
    expect(values(args, '--cap-drop', 1)).to.deep.equal([['ALL']]);
    expect(args).to.not.include('--unshare-net');
    expect(args).to.not.include('--setenv');
  });

  it('adds a network namespace of its own (loopback only) when the network is denied', () => {
    expect(bwrapArgs(LAYOUT, { ...request, network: 'deny' })).to.include('--unshare-net');
  });

  it('shows the layout read-only, then hides the data directory and config file over it, then binds the workspace read-write', () => {
    const args = bwrapArgs(LAYOUT, request);
    expect(values(args, '--ro-bind', 2)).to.deep.equal([['/usr', '/usr'], ['/etc', '/etc'], ['/srv/airlock', '/srv/airlock'], ['/dev/null', '/srv/airlock/airlock.config.json']]);
    expect(values(args, '--symlink', 2)).to.deep.equal([['usr/bin', '/bin']]);
    expect(values(args, '--tmpfs', 1)).to.deep.equal([['/tmp'], ['/srv/airlock/data']]);
    expect(values(args, '--bind', 2)).to.deep.equal([[request.workspaceDir, WORKSPACE_MOUNT]]);
    // Only /workspace and /tmp can be written: the root and the masks are read-only.
    expect(values(args, '--remount-ro', 1)).to.deep.equal([['/srv/airlock/data'], ['/']]);
    // bubblewrap mounts in order: each mask must come after the bind it covers, the workspace last.
    const at = (option: string, value: string) => args.findIndex((arg, index) => arg === option && args[index + 1] === value);
    expect(at('--tmpfs', '/srv/airlock/data')).to.be.greaterThan(at('--ro-bind', '/srv/airlock'));
    expect(at('--ro-bind', '/dev/null')).to.be.greaterThan(at('--ro-bind', '/srv/airlock'));
    expect(at('--bind', request.workspaceDir)).to.be.greaterThan(at('--tmpfs', '/srv/airlock/data'));
    expect(values(args, '--proc', 1)).to.deep.equal([['/proc']]);
    expect(values(args, '--dev', 1)).to.deep.equal([['/dev']]);
  });

  it('starts in /workspace, or in the matching directory under it', () => {
    expect(values(bwrapArgs(LAYOUT, request), '--chdir', 1)).to.deep.equal([['/workspace']]);
    expect(values(bwrapArgs(LAYOUT, { ...request, cwd: `${request.workspaceDir}/srv/tools` }), '--chdir', 1)).to.deep.equal([['/workspace/srv/tools']]);
  });

  it('refuses a working directory outside the workspace', () => {
    expect(() => bwrapArgs(LAYOUT, { ...request, cwd: '/srv/airlock/data' })).to.throw(/outside the workspace/);
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
    expect(layout.readOnly).to.deep.equal([...layout.readOnly].sort((a, b) => a.length - b.length));
  });

  it('hides the data directory and the config file when they lie under a path that is shown', () => {
    mkdirSync(join(dir, 'data'));
    writeFileSync(join(dir, 'airlock.config.json'), '{}');
    const layout = sandboxLayout({ dataDir: join(dir, 'data'), configPath: join(dir, 'airlock.config.json'), readOnlyPaths: [dir] });
    expect(layout.readOnly).to.include(dir);
    expect(layout.hiddenDirs.filter((path) => path.startsWith(dir))).to.deep.equal([join(dir, 'data')]);
    expect(layout.hiddenFiles.filter((path) => path.startsWith(dir))).to.deep.equal([join(dir, 'airlock.config.json')]);
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
    expect([...layout.hiddenDirs, ...layout.hiddenFiles].filter((path) => path.startsWith(dir))).to.deep.equal([]);
  });
});
