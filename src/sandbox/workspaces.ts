import { chown, lchown, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ServiceError } from '../errors.js';
import { workspaceBytes } from './artifacts.js';
import type { AdoptedUploads, StagedUploads } from './uploads.js';
import { WorkspaceVolumes } from './workspaceVolumes.js';
import type { VolumeOwner, VolumePrograms } from './workspaceVolumes.js';

/** Where a task's processes see its workspace. */
export const WORKSPACE_MOUNT = '/workspace';
/** The workspace folder for the user's files. */
export const UPLOADS_DIR = 'uploads';
/** The workspace folder the agent is told to put its deliverables in. */
export const DOWNLOADS_DIR = 'downloads';

const TASK_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** How long a computed disk usage is reused. */
const USAGE_TTL_MS = 2_000;
/** Past this many cached usages, stale ones are dropped. */
const USAGE_CACHE_PRUNE_AT = 1_000;
/** A volume not used for this long is unmounted (and mounted again when next needed). */
const VOLUME_IDLE_MS = 5 * 60_000;
const VOLUME_SWEEP_INTERVAL_MS = 60_000;
const MIB = 1024 * 1024;

/** How workspaces are kept: who owns them, and the bound on what each may hold. */
export interface WorkspaceOptions {
  /** The host user the sandboxed processes run as, who must be able to write the workspace; absent: Airlock's own. */
  owner?: VolumeOwner;
  /** A filesystem per workspace that enforces the limit; absent: plain directories. */
  volumes?: WorkspaceVolumes;
  /** The most a workspace may hold, in bytes (0: no bound): uploads beyond it are refused even where no volume enforces it. */
  limitBytes?: number;
  now?: () => number;
}

/**
 * The task workspaces under one root (`<dataDir>/workspaces/<taskId>`): creating them, moving
 * uploads in, measuring and deleting them. `exclusive` serialises the changes one task's workspace
 * must not see interleaved (uploads moving in while the retention sweep deletes it).
 */
export class Workspaces {
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly usages = new Map<string, { bytes: Promise<number>; at: number }>();
  private readonly now: () => number;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(readonly root: string, private readonly options: WorkspaceOptions = {}) {
    this.now = options.now ?? Date.now;
    if (options.volumes) {
      this.sweeper = setInterval(() => void options.volumes!.sweep(VOLUME_IDLE_MS), VOLUME_SWEEP_INTERVAL_MS);
      this.sweeper.unref();
    }
  }

  /** The workspace directory of a task (it may not exist, or its volume may not be mounted: see `open`). */
  dir(taskId: string): string {
    // Task ids come from the store or a checked route parameter; anything else is a bug.
    if (!TASK_ID.test(taskId)) throw new ServiceError('INTERNAL_ERROR', 'Invalid task id for a workspace');
    return join(this.root, taskId);
  }

  /** Creates the workspace (its volume, mounted) with its `uploads/` and `downloads/` folders, owned by the sandbox's user; returns its directory. */
  async ensure(taskId: string): Promise<string> {
    const dir = this.dir(taskId);
    await this.options.volumes?.attach(dir, true);
    const folders = [join(dir, UPLOADS_DIR), join(dir, DOWNLOADS_DIR)];
    await Promise.all(folders.map((folder) => mkdir(folder, { recursive: true })));
    const { owner } = this.options;
    if (owner) await Promise.all([dir, ...folders].map((path) => chown(path, owner.uid, owner.gid)));
    return dir;
  }

  /** The workspace directory for reading its files, its volume mounted if it has one. */
  async open(taskId: string): Promise<string> {
    const dir = this.dir(taskId);
    await this.options.volumes?.attach(dir, false);
    return dir;
  }

  /**
   * Moves checked uploads into the task's `uploads/` folder, owned by the sandbox's user. They
   * count against the workspace's limit: PAYLOAD_TOO_LARGE when they do not fit.
   */
  async adopt(taskId: string, staged: StagedUploads): Promise<AdoptedUploads> {
    const dir = await this.ensure(taskId);
    this.usages.delete(taskId);
    const limit = this.options.limitBytes ?? 0;
    if (limit > 0 && (await workspaceBytes(dir)) + staged.bytes > limit) throw this.full();
    let adopted: AdoptedUploads;
    try {
      adopted = await staged.moveInto(join(dir, UPLOADS_DIR), UPLOADS_DIR);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw this.full();
      throw err;
    } finally {
      this.usages.delete(taskId);
    }
    const { owner } = this.options;
    if (owner) await chownTree(join(dir, UPLOADS_DIR), owner);
    return adopted;
  }

  /** Deletes the task's workspace and everything in it (its volume too). */
  async remove(taskId: string): Promise<void> {
    const dir = this.dir(taskId);
    if (this.options.volumes) await this.options.volumes.destroy(dir);
    else await rm(dir, { recursive: true, force: true });
    this.usages.delete(taskId);
  }

  /** Stops the idle sweep and unmounts every volume (once the task processes are gone). */
  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    await this.options.volumes?.detachAll();
  }

  private full(): ServiceError {
    const limitMb = Math.round((this.options.limitBytes ?? 0) / MIB);
    return new ServiceError('PAYLOAD_TOO_LARGE', `The files do not fit in the task's workspace: it may hold at most ${limitMb} MiB; nothing was saved`);
  }

  /** The ids of the tasks that have a workspace directory. */
  async taskIds(): Promise<string[]> {
    try {
      return (await readdir(this.root)).filter((name) => TASK_ID.test(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /** Runs `fn` after every earlier `exclusive` call for the same task has settled. */
  async exclusive<T>(taskId: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(taskId) ?? Promise.resolve();
    const run = previous.then(fn);
    const settled = run.then(() => undefined, () => undefined);
    this.locks.set(taskId, settled);
    try {
      return await run;
    } finally {
      if (this.locks.get(taskId) === settled) this.locks.delete(taskId);
    }
  }

  /**
   * The bytes of the task's workspace files: a walk of the workspace, reused for 2 s (a client
   * polling a task does not walk it each time) and forgotten when uploads move in, a run ends or
   * the workspace is deleted. 0 when there is no workspace.
   */
  usage(taskId: string): Promise<number> {
    const now = this.now();
    const cached = this.usages.get(taskId);
    if (cached && now - cached.at < USAGE_TTL_MS) return cached.bytes;
    if (this.usages.size >= USAGE_CACHE_PRUNE_AT) {
      for (const [id, entry] of this.usages) if (now - entry.at >= USAGE_TTL_MS) this.usages.delete(id);
    }
    const bytes = this.open(taskId).then(workspaceBytes);
    this.usages.set(taskId, { bytes, at: now });
    bytes.catch(() => {
      if (this.usages.get(taskId)?.bytes === bytes) this.usages.delete(taskId);
    });
    return bytes;
  }

  /** Drops the cached usage of a task whose workspace just changed. */
  forgetUsage(taskId: string): void {
    this.usages.delete(taskId);
  }
}

/** Gives everything under `dir` (and `dir`) to `owner`, links themselves, not what they point to. */
async function chownTree(dir: string, owner: VolumeOwner): Promise<void> {
  const paths = [dir, ...(await readdir(dir, { recursive: true })).map((path) => join(dir, path))];
  for (const path of paths) await lchown(path, owner.uid, owner.gid);
}

/**
 * The workspaces under `root`, each a volume of `limitMb` where volumes work here. Where they do
 * not, the limit still bounds uploads, and `warning` says what is not enforced (logged at
 * start-up and shown on each run's first status event).
 */
export async function openWorkspaces(
  root: string, limitMb: number, owner: VolumeOwner | undefined, programs?: Partial<VolumePrograms>,
): Promise<{ workspaces: Workspaces; warning?: string }> {
  const limitBytes = limitMb * MIB;
  if (limitMb === 0) return { workspaces: new Workspaces(root, { owner }) };
  const opened = await WorkspaceVolumes.open(root, limitMb, owner, { programs });
  if ('volumes' in opened) return { workspaces: new Workspaces(root, { owner, volumes: opened.volumes, limitBytes }) };
  const warning = `the workspace disk limit (${limitMb} MiB) cannot be enforced here: ${opened.reason}; only uploads are held to it`;
  return { workspaces: new Workspaces(root, { owner, limitBytes }), warning };
}
