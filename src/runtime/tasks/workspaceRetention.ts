import type { Logger } from 'pino';
import type { Workspaces } from '../../sandbox/workspaces.js';
import { FINISHED_STATUSES } from '../../store/store.js';
import type { Store } from '../../store/store.js';

export interface WorkspaceRetentionOptions {
  store: Store;
  workspaces: Workspaces;
  /** A finished task's workspace is deleted this long after the task finished. */
  retentionMs: number;
  /** How often the sweep runs. */
  sweepIntervalMs: number;
  logger: Logger;
  now?: () => number;
}

/**
 * Deletes the workspaces of tasks that finished (completed, failed or cancelled) longer than
 * `retentionMs` ago, on a timer that never keeps the process alive. Live tasks and workspaces with
 * no task in the store are left alone. The task itself stays: only its files go.
 */
export class WorkspaceRetention {
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;

  constructor(private readonly options: WorkspaceRetentionOptions) {}

  start(): void {
    this.timer ??= setInterval(() => void this.sweep(), this.options.sweepIntervalMs);
    this.timer.unref();
  }

  /** Stops the timer and waits for a sweep in progress. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.sweeping;
  }

  /** One pass over every workspace; resolves with how many were deleted. Never rejects. */
  sweep(): Promise<number> {
    this.sweeping ??= this.pass().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async pass(): Promise<number> {
    const { store, workspaces, retentionMs, logger } = this.options;
    const cutoff = (this.options.now ?? Date.now)() - retentionMs;
    let removed = 0;
    let taskIds: string[];
    try {
      taskIds = await workspaces.taskIds();
    } catch (err) {
      logger.error({ err }, 'workspace retention sweep could not list the workspaces');
      return 0;
    }
    for (const taskId of taskIds) {
      try {
        // Exclusive with follow-ups: a task cannot become live between the check and the delete.
        const deleted = await workspaces.exclusive(taskId, async () => {
          const task = await store.getTask(taskId);
          const finishedAt = task?.completedAt ? Date.parse(task.completedAt) : NaN;
          if (!task || !FINISHED_STATUSES.includes(task.status) || !(finishedAt <= cutoff)) return false;
          await workspaces.remove(taskId);
          return true;
        });
        if (deleted) removed++;
      } catch (err) {
        logger.error({ err, taskId }, 'workspace retention could not delete a workspace');
      }
    }
    if (removed) logger.info({ removed, retentionMs }, 'deleted workspaces of tasks past the retention period');
    return removed;
  }
}
