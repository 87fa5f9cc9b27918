import { isAbsolute, relative, sep } from 'node:path';
import type { NetworkPolicy } from '../config.js';
import { layoutShows } from './bwrapLayout.js';
import type { BwrapLayout, SandboxLayouts } from './bwrapLayout.js';
import { joinGroupCommand } from './cgroupLimits.js';
import type { CgroupV1Limits } from './cgroupLimits.js';
import type { ProcessSandbox, SandboxedSpawn, SandboxRequest } from './processSandbox.js';
import { WORKSPACE_MOUNT } from './workspaces.js';

/**
 * The whole environment of the host processes that start a sandbox (the cgroup shell, bubblewrap,
 * setpriv): fixed, so nothing a task chose (LD_PRELOAD, GCONV_PATH, …) reaches a process that
 * runs on the host. The task's variables are set by the inner bubblewrap, inside.
 */
export const HOST_ENV: Readonly<Record<string, string>> = Object.freeze({ PATH: '/usr/sbin:/usr/bin:/sbin:/bin' });

/** Kernel interfaces under /proc that stay writable in a new procfs: made read-only inside. */
const KERNEL_INTERFACES = ['/proc/sys', '/proc/sysrq-trigger'];

/** The unprivileged host user the sandbox runs as when Airlock runs as root, and how to become it. */
export interface SandboxUser {
  uid: number;
  gid: number;
  /** The absolute path of util-linux's setpriv, which drops to the user between the two stages. */
  setpriv: string;
}

/** The options of the two bubblewrap stages of one process, each read from a file descriptor. */
export interface BwrapStages {
  /** The outer stage: namespaces and mounts (run as root when Airlock is root, so that any path it binds can be reached). */
  outer: string[];
  /** The inner stage, as the unprivileged user: a user namespace that cannot make more, no capabilities, the task's environment. */
  inner: string[];
}

/**
 * bubblewrap's options for one process of a task, in two stages. The outer one makes new pid, IPC,
 * UTS and cgroup namespaces (and a network namespace with only its own loopback unless `network` is
 * `allow`), a fresh read-only root with the layout's paths, a private /tmp, its own /proc and a
 * minimal /dev, and the workspace read-write at /workspace; without root it makes a user namespace
 * too. The inner one runs as the sandbox's user: a new user namespace (which cannot make more),
 * no capabilities, /proc/sys read-only, a clear environment with only the task's variables.
 */
export function bwrapStages(
  layout: BwrapLayout,
  request: { workspaceDir: string; cwd: string; network: NetworkPolicy; env: Record<string, string> },
  user: SandboxUser | undefined,
): BwrapStages {
  const inside = relative(request.workspaceDir, request.cwd);
  if (inside.startsWith('..') || isAbsolute(inside)) throw new Error(`the working directory ${request.cwd} is outside the workspace`);
  const outer = [
    ...(user ? [] : ['--unshare-user']),
    '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup',
    ...(request.network === 'deny' ? ['--unshare-net'] : []),
    '--die-with-parent', '--new-session',
    '--dev', '/dev', '--proc', '/proc', '--perms', '1777', '--tmpfs', '/tmp',
  ];
  for (const dir of layout.dirs) outer.push('--perms', '0755', '--dir', dir);
  for (const path of layout.readOnly) outer.push('--ro-bind', path, path);
  for (const { path, target } of layout.symlinks) outer.push('--symlink', target, path);
  for (const dir of layout.hiddenDirs) outer.push('--tmpfs', dir, '--remount-ro', dir);
  for (const file of layout.hiddenFiles) outer.push('--ro-bind', '/dev/null', file);
  outer.push('--bind', request.workspaceDir, WORKSPACE_MOUNT);
  // The new root is a tmpfs of bubblewrap's: read-only too, so /workspace and /tmp are the only places to write.
  outer.push('--remount-ro', '/');

  // --dev-bind: a plain --bind would mount the outer stage's /dev/null and friends again with nodev.
  const inner = ['--unshare-user', '--disable-userns', '--cap-drop', 'ALL', '--die-with-parent', '--dev-bind', '/', '/'];
  for (const path of KERNEL_INTERFACES) inner.push('--ro-bind-try', path, path);
  inner.push('--clearenv');
  for (const [name, value] of Object.entries(request.env)) inner.push('--setenv', name, value);
  inner.push('--chdir', inside ? `${WORKSPACE_MOUNT}/${inside.split(sep).join('/')}` : WORKSPACE_MOUNT);
  return { outer, inner };
}

/** bubblewrap's `--args` format: NUL-terminated arguments. A NUL inside one would start an option of the caller's. */
export function argsData(args: string[]): Buffer {
  for (const arg of args) {
    if (arg.includes('\0')) throw new Error('a sandbox option (an environment variable\'s name or value, a path) contains a NUL character');
  }
  return Buffer.from(args.map((arg) => `${arg}\0`).join(''), 'utf8');
}

/**
 * Runs each process in two nested bubblewrap sandboxes, inside its own cgroups when limits apply.
 * The command line of every host process holds no value of the task's: bubblewrap reads its
 * options from file descriptors 3 (outer) and 4 (inner), and the host processes get HOST_ENV.
 */
export class BwrapSandbox implements ProcessSandbox {
  readonly kind = 'bwrap';

  constructor(
    /** The absolute path of the bubblewrap program. */
    private readonly bwrap: string,
    private readonly layouts: SandboxLayouts,
    private readonly cgroups?: CgroupV1Limits,
    /** Set when Airlock runs as root: the user the sandboxed processes run as on the host. */
    readonly user?: SandboxUser,
  ) {}

  workspacePath(): string {
    return WORKSPACE_MOUNT;
  }

  shows(path: string, readOnlyPaths: readonly string[] = []): boolean {
    return layoutShows(this.layouts.with(readOnlyPaths), path);
  }

  async prepare(request: SandboxRequest): Promise<SandboxedSpawn> {
    const stages = bwrapStages(this.layouts.with(request.readOnlyPaths ?? []), request, this.user);
    const fdInputs = [argsData(stages.outer), argsData(stages.inner)];
    const drop = this.user ? [this.user.setpriv, ...setprivArgs(this.user)] : [];
    const args = ['--args', '3', '--', ...drop, this.bwrap, '--args', '4', '--', request.command, ...request.args];
    const group = this.cgroups?.create();
    const launch = group ? joinGroupCommand(group, this.bwrap, args) : { command: this.bwrap, args };
    // The host's working directory is / : the workspace's host path need not be reachable by anyone but bubblewrap.
    return { ...launch, env: { ...HOST_ENV }, cwd: '/', fdInputs, release: () => group?.remove() };
  }
}

/** setpriv's options: become the user with no supplementary groups, no capabilities at all, and no way to gain privileges. */
function setprivArgs(user: SandboxUser): string[] {
  return [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--'];
}
