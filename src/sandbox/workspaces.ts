import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ServiceError } from '../errors.js';
import { workspaceBytes } from './artifacts.js';
import type { AdoptedUploads, StagedUploads } from './uploads.js';

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

/**
 * The task workspaces under one root (`<dataDir>/workspaces/<taskId>`): creating them, moving
 * uploads in, measuring and deleting them. `exclusive` serialises the changes one task's workspace
 * must not see interleaved (uploads moving in while the retention sweep deletes it).
 */
export class Workspaces {
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly usages = new Map<string, { bytes: Promise<number>; at: number }>();

  constructor(readonly root: string, private readonly now: () => number = Date.now) {}

  /** The workspace directory of a task (it may not exist). */
  dir(taskId: string): string {
    // Task ids come from the store or a checked route parameter; anything else is a bug.
    if (!TASK_ID.test(taskId)) throw new ServiceError('INTERNAL_ERROR', 'Invalid task id for a workspace');
    return join(this.root, taskId);
  }

  /** Creates the workspace with its `uploads/` and `downloads/` folders; returns its directory. */
  async ensure(taskId: string): Promise<string> {
    const dir = this.dir(taskId);
    await Promise.all([mkdir(join(dir, UPLOADS_DIR), { recursive: true }), mkdir(join(dir, DOWNLOADS_DIR), { recursive: true })]);
    return dir;
  }

  /** Moves checked uploads into the task's `uploads/` folder. */
  async adopt(taskId: string, staged: StagedUploads): Promise<AdoptedUploads> {
    const dir = await this.ensure(taskId);
    this.usages.delete(taskId);
    return staged.moveInto(join(dir, UPLOADS_DIR), UPLOADS_DIR);
  }

  /** Deletes the task's workspace and everything in it. */
  async remove(taskId: string): Promise<void> {
    await rm(this.dir(taskId), { recursive: true, force: true });
    this.usages.delete(taskId);
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
    const bytes = workspaceBytes(this.dir(taskId));
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
