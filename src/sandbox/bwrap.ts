import { existsSync, lstatSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NetworkPolicy } from '../config.js';
import { joinGroupCommand } from './cgroupLimits.js';
import type { CgroupV1Limits } from './cgroupLimits.js';
import type { ProcessSandbox, SandboxedSpawn, SandboxRequest } from './processSandbox.js';
import { WORKSPACE_MOUNT } from './workspaces.js';

/** The system directories shown read-only (as symlinks where the host has symlinks, as on merged-/usr systems). */
const SYSTEM_PATHS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc'];

/** Airlock's checkout: the code of the built-in server and the fixtures, and the tsx they run with. */
const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** What a sandbox shows of the host: the same for every process of one Airlock. */
export interface BwrapLayout {
  /** Host paths shown read-only at the same path, parents before children. */
  readOnly: string[];
  /** Symlinks made inside: `path` → `target`, e.g. `/bin` → `usr/bin`. */
  symlinks: Array<{ path: string; target: string }>;
  /** Directories under a read-only path that are hidden behind an empty tmpfs (Airlock's data directory, /etc/ssl/private). */
  hiddenDirs: string[];
  /** Files under a read-only path that are hidden behind an empty file (Airlock's config file, /etc/shadow). */
  hiddenFiles: string[];
}

/** The shown system directory whose entries other users may not read are hidden as well (a sandbox of root's would read them). */
const SYSTEM_CONFIG_DIR = '/etc';

/**
 * The layout for this host: the system directories, Node.js, Airlock's checkout and node_modules,
 * and `readOnlyPaths`, all read-only; Airlock's data directory (database, every workspace) and
 * its config file hidden wherever they would otherwise show, and so are the entries of /etc that
 * other users may not read (/etc/shadow, /etc/ssl/private, …).
 */
export function sandboxLayout(options: { dataDir: string; configPath?: string; readOnlyPaths: string[] }): BwrapLayout {
  const layout: BwrapLayout = { readOnly: [], symlinks: [], hiddenDirs: [], hiddenFiles: [] };
  const show = (path: string) => {
    if (!layout.readOnly.some((shown) => isWithin(shown, path))) layout.readOnly.push(path);
  };
  for (const path of SYSTEM_PATHS) {
    const stats = lstatOrUndefined(path);
    if (stats?.isSymbolicLink()) layout.symlinks.push({ path, target: readlinkSync(path) });
    else if (stats?.isDirectory()) show(path);
  }
  // A resolv.conf that links elsewhere (/run/systemd/resolve/…) must come along, or DNS breaks.
  const resolvConf = realOrUndefined('/etc/resolv.conf');
  if (resolvConf) show(resolvConf);
  // Node's installation prefix (bin/node, lib/node_modules/npm), so `node` and `npx` work.
  const node = realpathSync(process.execPath);
  const prefix = dirname(dirname(node));
  show(prefix === '/' ? node : prefix);
  const project = realpathSync(PROJECT_ROOT);
  show(project);
  const modules = realOrUndefined(join(project, 'node_modules'));
  if (modules) show(modules);
  for (const path of options.readOnlyPaths) {
    const real = realOrUndefined(path);
    if (real) show(real);
  }
  layout.readOnly.sort((a, b) => a.length - b.length);

  const visible = (path: string) => layout.readOnly.some((shown) => isWithin(shown, path));
  const dataDir = realOrUndefined(options.dataDir);
  if (dataDir && visible(dataDir)) layout.hiddenDirs.push(dataDir);
  const configPath = options.configPath && realOrUndefined(options.configPath);
  if (configPath && visible(configPath) && !(dataDir && isWithin(dataDir, configPath))) layout.hiddenFiles.push(configPath);
  // Inside, the user is root of a namespace mapped to Airlock's own user: were that root, it could
  // read what only root may read.
  if (layout.readOnly.includes(SYSTEM_CONFIG_DIR)) hidePrivateEntries(SYSTEM_CONFIG_DIR, layout);
  return layout;
}

/** Adds every directory and file under `dir` that other users may not read to the hidden ones; symlinks are not followed. */
function hidePrivateEntries(dir: string, layout: BwrapLayout): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(dir, name);
    const stats = lstatOrUndefined(path);
    if (!stats || stats.isSymbolicLink()) continue;
    const othersMayRead = (stats.mode & 0o004) !== 0 && (!stats.isDirectory() || (stats.mode & 0o001) !== 0);
    if (stats.isDirectory()) {
      if (othersMayRead) hidePrivateEntries(path, layout);
      else layout.hiddenDirs.push(path);
    } else if (!othersMayRead) {
      layout.hiddenFiles.push(path);
    }
  }
}

/**
 * bubblewrap's options for one process of a task (everything before `--`): new user (without
 * capabilities, and unable to make more namespaces), pid, IPC, UTS and cgroup namespaces, and a
 * network namespace with only its own loopback unless `network` is `allow`; a fresh read-only root
 * with the layout's read-only paths, a private /tmp, its own /proc and a minimal /dev; the
 * workspace read-write at /workspace; a new session; killed with its parent.
 */
export function bwrapArgs(layout: BwrapLayout, request: { workspaceDir: string; cwd: string; network: NetworkPolicy }): string[] {
  const inside = relative(request.workspaceDir, request.cwd);
  if (inside.startsWith('..') || isAbsolute(inside)) throw new Error(`the working directory ${request.cwd} is outside the workspace`);
  const args = [
    '--unshare-user', '--disable-userns', '--cap-drop', 'ALL',
    '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup',
    ...(request.network === 'deny' ? ['--unshare-net'] : []),
    '--die-with-parent', '--new-session',
    '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp',
  ];
  for (const path of layout.readOnly) args.push('--ro-bind', path, path);
  for (const { path, target } of layout.symlinks) args.push('--symlink', target, path);
  for (const dir of layout.hiddenDirs) args.push('--tmpfs', dir, '--remount-ro', dir);
  for (const file of layout.hiddenFiles) args.push('--ro-bind', '/dev/null', file);
  args.push('--bind', request.workspaceDir, WORKSPACE_MOUNT);
  // The new root is a tmpfs of bubblewrap's: read-only too, so /workspace and /tmp are the only places to write.
  args.push('--remount-ro', '/');
  args.push('--chdir', inside ? `${WORKSPACE_MOUNT}/${inside.split(sep).join('/')}` : WORKSPACE_MOUNT);
  return args;
}

/** Runs each process in its own bubblewrap sandbox, inside its own cgroups when limits apply. */
export class BwrapSandbox implements ProcessSandbox {
  readonly kind = 'bwrap';

  constructor(
    /** The absolute path of the bubblewrap program. */
    private readonly bwrap: string,
    private readonly layout: BwrapLayout,
    private readonly cgroups?: CgroupV1Limits,
  ) {}

  workspacePath(): string {
    return WORKSPACE_MOUNT;
  }

  async prepare(request: SandboxRequest): Promise<SandboxedSpawn> {
    // The environment is handed to bubblewrap, which passes it on: as --setenv options, secrets
    // would sit in bubblewrap's command line, which every process of the host (and the sandbox) can read.
    const args = [...bwrapArgs(this.layout, request), '--', request.command, ...request.args];
    const group = this.cgroups?.create();
    const launch = group ? joinGroupCommand(group, this.bwrap, args) : { command: this.bwrap, args };
    return { ...launch, env: request.env, cwd: request.workspaceDir, release: () => group?.remove() };
  }
}

/** Whether `path` is `root` or inside it (both absolute). */
function isWithin(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function realOrUndefined(path: string): string | undefined {
  return existsSync(path) ? realpathSync(path) : undefined;
}
