import { execFile } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { mkdir, readdir, rm, rmdir, stat, truncate, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { HOST_ENV } from './bwrap.js';

const run = promisify(execFile);

const MIB = 1024 * 1024;
/** How long a command of the volume set-up (mkfs, mount, umount) may take. */
const COMMAND_TIMEOUT_MS = 30_000;
/** The size of the trial volume made at start-up. */
const PROBE_MB = 16;
/** What mount points get: no device files, no setuid programs. Freed blocks go back to the host (discard). */
const MOUNT_OPTIONS = 'loop,nosuid,nodev,discard';
/** How often, and how far apart, a busy volume's unmount is tried at shutdown before it is detached lazily. */
const BUSY_RETRIES = 20;
const BUSY_RETRY_MS = 100;

/** The programs that make, mount and unmount volumes (absolute paths). */
export interface VolumePrograms {
  mkfs: string;
  mount: string;
  umount: string;
}

/** The host user that owns a volume's root. */
export interface VolumeOwner {
  uid: number;
  gid: number;
}

/**
 * A filesystem of its own for each task workspace: a sparse ext4 image `<workspace>.img` of the
 * limit's size, loop-mounted at the workspace directory. The kernel enforces the limit (a write
 * past it fails with ENOSPC), whoever writes. Needs root, loop devices, mkfs.ext4 and mount;
 * `open` tells whether they work here. Mounting the same image again reuses its loop device, so
 * a volume unmounted on the host while a sandbox still holds it is safe to mount again.
 */
export class WorkspaceVolumes {
  /** Mounted volumes: mount point → when last used. */
  private readonly mounted = new Map<string, number>();
  /** One set-up at a time per mount point. */
  private readonly pending = new Map<string, Promise<unknown>>();

  private constructor(
    /** The size of each volume, in MiB. */
    readonly limitMb: number,
    private readonly owner: VolumeOwner | undefined,
    private readonly programs: VolumePrograms,
    private readonly now: () => number,
  ) {}

  /**
   * Volumes of `limitMb` under `root`, after a trial volume was made, mounted, written and removed;
   * or why they cannot be made here.
   */
  static async open(
    root: string, limitMb: number, owner: VolumeOwner | undefined,
    options: { now?: () => number; /** Other programs than the system's (tests). */ programs?: Partial<VolumePrograms> } = {},
  ): Promise<{ volumes: WorkspaceVolumes } | { reason: string }> {
    if (process.getuid?.() !== 0) return { reason: 'Airlock does not run as root, and only root can mount a filesystem for each workspace' };
    const now = options.now ?? Date.now;
    const programs = { mkfs: findSystemProgram('mkfs.ext4'), mount: findSystemProgram('mount'), umount: findSystemProgram('umount'), ...options.programs };
    const missing = Object.entries(programs).filter(([, path]) => !path).map(([name]) => (name === 'mkfs' ? 'mkfs.ext4 (e2fsprogs)' : `${name} (util-linux)`));
    if (missing.length) return { reason: `${missing.join(' and ')} not installed` };
    const volumes = new WorkspaceVolumes(limitMb, owner, programs as VolumePrograms, now);
    await mkdir(root, { recursive: true });
    const trial = join(root, '.volume-probe');
    try {
      await volumes.destroy(trial);
      await volumes.create(trial, PROBE_MB);
      await writeFile(join(trial, 'probe'), 'ok');
      // Volumes a previous process left mounted (it was killed) are this one's to unmount when idle.
      for (const dir of mountPointsUnder(realpathSync(root))) volumes.mounted.set(dir, now());
      return { volumes };
    } catch (err) {
      return { reason: describe(err) };
    } finally {
      await volumes.destroy(trial).catch(() => undefined);
    }
  }

  /** The image file of the volume mounted at `dir`. */
  static imageOf(dir: string): string {
    return `${dir}.img`;
  }

  /**
   * Makes `dir` the mount point of its volume: mounts the image, making it first when `create`
   * and there is none. True when a volume is mounted there now; false when there is no image and
   * `create` is false, or `dir` already holds files of its own (a workspace from before volumes).
   */
  attach(dir: string, create: boolean): Promise<boolean> {
    return this.serialised(dir, async () => {
      // Asked of the kernel each time: a volume unmounted behind Airlock's back is mounted again.
      if (await isMountPoint(dir)) {
        this.mounted.set(dir, this.now());
        return true;
      }
      if (existsSync(WorkspaceVolumes.imageOf(dir))) {
        await this.mount(dir);
        return true;
      }
      if (!create || (await holdsFiles(dir))) return false;
      await this.create(dir, this.limitMb);
      return true;
    });
  }

  /** Unmounts the volumes not used for `idleMs` (the next attach mounts them again). */
  async sweep(idleMs: number): Promise<void> {
    const cutoff = this.now() - idleMs;
    for (const [dir, usedAt] of [...this.mounted]) {
      if (usedAt <= cutoff) await this.serialised(dir, () => this.unmount(dir)).catch(() => undefined);
    }
  }

  /**
   * Unmounts every volume (at shutdown, once the task processes were told to end). One still busy
   * (a process that has not exited yet) is tried again for a while, then detached lazily: the
   * kernel unmounts it when its last user is gone.
   */
  async detachAll(): Promise<void> {
    await Promise.all([...this.mounted.keys()].map((dir) => this.serialised(dir, async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.unmount(dir);
        } catch (err) {
          if (attempt >= BUSY_RETRIES) return this.unmount(dir, true).catch(() => undefined);
          await new Promise((resolve) => setTimeout(resolve, BUSY_RETRY_MS));
        }
      }
    })));
  }

  /** Unmounts the volume at `dir` and deletes its image and the mount point. */
  destroy(dir: string): Promise<void> {
    return this.serialised(dir, async () => {
      if (this.mounted.has(dir) || (await isMountPoint(dir))) await this.unmount(dir);
      await rm(WorkspaceVolumes.imageOf(dir), { force: true });
      await rm(dir, { recursive: true, force: true });
    });
  }

  /** How many volumes are mounted now. */
  get size(): number {
    return this.mounted.size;
  }

  private async create(dir: string, sizeMb: number): Promise<void> {
    const image = WorkspaceVolumes.imageOf(dir);
    await mkdir(dir, { recursive: true });
    await writeFile(image, '', { flag: 'wx' });
    try {
      // Sparse: the host gives the image blocks only as files fill it.
      await truncate(image, sizeMb * MIB);
      // No journal: a workspace is scratch space, and each journal would be a kernel thread per mount.
      const owner = this.owner ? `,root_owner=${this.owner.uid}:${this.owner.gid}` : '';
      await this.command(this.programs.mkfs, ['-q', '-F', '-m', '0', '-O', '^has_journal', '-E', `nodiscard${owner}`, image]);
      await this.mount(dir);
      await rmdir(join(dir, 'lost+found')).catch(() => undefined);
    } catch (err) {
      if (this.mounted.has(dir)) await this.unmount(dir).catch(() => undefined);
      await rm(image, { force: true });
      throw err;
    }
  }

  private async mount(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    await this.command(this.programs.mount, ['-o', MOUNT_OPTIONS, WorkspaceVolumes.imageOf(dir), dir]);
    this.mounted.set(dir, this.now());
  }

  private async unmount(dir: string, lazy = false): Promise<void> {
    await this.command(this.programs.umount, lazy ? ['-l', dir] : [dir]);
    this.mounted.delete(dir);
  }

  private async command(program: string, args: string[]): Promise<void> {
    await run(program, args, { env: HOST_ENV, timeout: COMMAND_TIMEOUT_MS });
  }

  private serialised<T>(dir: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.pending.get(dir) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const settled = next.then(() => undefined, () => undefined);
    this.pending.set(dir, settled);
    void settled.then(() => {
      if (this.pending.get(dir) === settled) this.pending.delete(dir);
    });
    return next;
  }
}

/** A system program's path, from the usual system directories (Airlock's PATH may lack the sbin ones). */
function findSystemProgram(name: string): string | undefined {
  return ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].map((dir) => join(dir, name)).find((path) => existsSync(path));
}

/** The mount points directly under `root`, from this process's mount table. */
function mountPointsUnder(root: string): string[] {
  let table: string;
  try {
    table = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  // mountinfo: id parent major:minor root mountpoint …; octal escapes (\040) stand for spaces and the like.
  const points = table.split('\n').map((line) => line.split(' ')[4]).filter((point): point is string => Boolean(point));
  const decoded = points.map((point) => point.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))));
  return [...new Set(decoded.filter((point) => dirname(point) === root && !point.endsWith('/.volume-probe')))];
}

/** Whether `dir` is the root of a filesystem other than its parent's. */
async function isMountPoint(dir: string): Promise<boolean> {
  try {
    const [own, parent] = await Promise.all([stat(dir), stat(dirname(dir))]);
    return own.dev !== parent.dev;
  } catch {
    return false;
  }
}

async function holdsFiles(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length > 0;
  } catch {
    return false;
  }
}

/** A failed command's own words (its stderr), else the error's message. */
function describe(err: unknown): string {
  const stderr = (err as { stderr?: string }).stderr?.trim();
  return stderr ? stderr.split('\n').at(-1)! : (err as Error).message.split('\n')[0]!;
}
