import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

/** Limits of one sandboxed process and everything it starts; 0 means no limit. */
export interface ResourceLimits {
  memoryBytes: number;
  maxProcesses: number;
}

/** The cgroups holding one process tree. */
export interface LimitGroup {
  /** The `cgroup.procs` files the process joins before it starts anything. */
  procsFiles: string[];
  /** Kills whatever is still in the cgroups and removes them; idempotent. */
  remove(): void;
}

type Controller = 'memory' | 'pids';

const GROUP_PREFIX = 'airlock-';
const REMOVE_ATTEMPTS = 50;
const REMOVE_RETRY_MS = 100;

/**
 * Memory and process-count limits through cgroup v1 (`memory.limit_in_bytes`, `pids.max`): each
 * sandboxed process gets its own cgroups, `airlock-<pid>-<random>`, under Airlock's own, in every
 * hierarchy a limit needs. Needs those hierarchies mounted and writable (root, no systemd
 * delegation needed). cgroup v2 is not used: its delegation rules depend on how the host set it up.
 */
export class CgroupV1Limits {
  private constructor(
    private readonly limits: ResourceLimits,
    /** The directory of Airlock's own cgroup in each hierarchy a limit needs. */
    private readonly parents: Partial<Record<Controller, string>>,
  ) {}

  /**
   * Finds the hierarchies, removes cgroups left by Airlock processes that no longer run, and tries
   * each limit on a trial cgroup, so a limit that cannot be applied is known at start-up. The
   * limits that work are kept; `cgroups` is absent when none does.
   */
  static open(limits: ResourceLimits): { cgroups?: CgroupV1Limits; unapplied: Array<{ limit: Controller; reason: string }> } {
    const needed: Controller[] = [...(limits.memoryBytes > 0 ? ['memory' as const] : []), ...(limits.maxProcesses > 0 ? ['pids' as const] : [])];
    const parents: Partial<Record<Controller, string>> = {};
    const unapplied: Array<{ limit: Controller; reason: string }> = [];
    let own: Map<string, string>;
    try {
      own = ownCgroups();
    } catch (err) {
      return { unapplied: needed.map((limit) => ({ limit, reason: (err as Error).message })) };
    }
    for (const controller of needed) {
      try {
        const dir = hierarchyDir(controller, own);
        if (!dir) throw new Error(`no cgroup v1 "${controller}" hierarchy is mounted`);
        sweepStale(dir);
        new CgroupV1Limits(limits, { [controller]: dir }).create().remove();
        parents[controller] = dir;
      } catch (err) {
        unapplied.push({ limit: controller, reason: (err as Error).message });
      }
    }
    return { ...(Object.keys(parents).length ? { cgroups: new CgroupV1Limits(limits, parents) } : {}), unapplied };
  }

  /** New cgroups with the limits set, for one process; throws when they cannot be made. */
  create(): LimitGroup {
    const name = `${GROUP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`;
    const dirs: string[] = [];
    const group = { procsFiles: [] as string[], remove: onlyOnce(() => removeGroups(dirs)) };
    try {
      for (const [controller, parent] of Object.entries(this.parents) as [Controller, string][]) {
        const dir = join(parent, name);
        mkdirSync(dir);
        dirs.push(dir);
        if (controller === 'memory') {
          writeFileSync(join(dir, 'memory.limit_in_bytes'), String(this.limits.memoryBytes));
          // With swap accounting on, the same figure caps memory plus swap, so the limit cannot be dodged into swap.
          if (existsSync(join(dir, 'memory.memsw.limit_in_bytes'))) writeFileSync(join(dir, 'memory.memsw.limit_in_bytes'), String(this.limits.memoryBytes));
        } else {
          writeFileSync(join(dir, 'pids.max'), String(this.limits.maxProcesses));
        }
        group.procsFiles.push(join(dir, 'cgroup.procs'));
      }
    } catch (err) {
      group.remove();
      throw new Error(`could not set up cgroup limits: ${(err as Error).message}`, { cause: err });
    }
    return group;
  }
}

/**
 * The command line that moves itself into the cgroups, then becomes `command args`: everything
 * the command starts is born inside them.
 */
export function joinGroupCommand(group: LimitGroup, command: string, args: string[]): { command: string; args: string[] } {
  const script = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n - 1)); done; exec "$@"';
  return { command: '/bin/sh', args: ['-c', script, 'sh', String(group.procsFiles.length), ...group.procsFiles, command, ...args] };
}

/** Airlock's own cgroup path in each v1 hierarchy, by controller (from /proc/self/cgroup). */
function ownCgroups(): Map<string, string> {
  const own = new Map<string, string>();
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    for (const controller of match[1]!.split(',')) if (controller) own.set(controller, match[2]!);
  }
  return own;
}

/** The directory of Airlock's own cgroup in the v1 hierarchy of `controller`, if it is mounted. */
function hierarchyDir(controller: Controller, own: Map<string, string>): string | undefined {
  const path = own.get(controller);
  if (path === undefined) return undefined;
  // mountinfo: id parent major:minor root mountpoint options - fstype source superoptions
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const [fstype, , superOptions = ''] = right.split(' ');
    if (fstype !== 'cgroup' || !superOptions.split(',').includes(controller)) continue;
    const fields = left.split(' ');
    const root = fields[3]!;
    const mountPoint = fields[4]!;
    const inside = relative(root, path);
    if (inside.startsWith('..')) continue;
    return join(mountPoint, inside);
  }
  return undefined;
}

/** Removes the cgroups of Airlock processes that are gone (a crash or SIGKILL leaves them behind). */
function sweepStale(parent: string): void {
  for (const name of readdirSync(parent)) {
    const match = new RegExp(`^${GROUP_PREFIX}(\\d+)-[0-9a-f]+$`).exec(name);
    if (!match || isRunning(Number(match[1]))) continue;
    try {
      rmdirSync(join(parent, name));
    } catch {
      // still holds a process (left running by a crashed Airlock); the next start tries again
    }
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// A cgroup can be removed only once the last of its processes is gone: the process tree is being
// killed (bubblewrap's pid namespace ends with its parent), so what is left is killed and the
// removal retried for a few seconds.
function removeGroups(dirs: string[]): void {
  let attempts = 0;
  const attempt = () => {
    for (const dir of [...dirs]) {
      for (const pid of readProcs(dir)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      try {
        rmdirSync(dir);
        dirs.splice(dirs.indexOf(dir), 1);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') dirs.splice(dirs.indexOf(dir), 1);
      }
    }
    if (dirs.length && ++attempts < REMOVE_ATTEMPTS) setTimeout(attempt, REMOVE_RETRY_MS).unref();
  };
  attempt();
}

function readProcs(dir: string): number[] {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function onlyOnce(run: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    run();
  };
}
