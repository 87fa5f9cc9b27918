import type { Store, TaskUsage } from '../../store/store.js';

/**
 * A task's token totals while it runs: the agent loop's model turns and the model calls made for
 * its MCP servers (sampling) add up here, and every addition is stored at once. One meter per run,
 * so concurrent additions never overwrite each other.
 */
export class UsageMeter {
  private total: TaskUsage;

  constructor(private readonly store: Store, private readonly taskId: string, start: TaskUsage) {
    this.total = { ...start };
  }

  get current(): TaskUsage {
    return { ...this.total };
  }

  /** Adds one model call's tokens (and `turns`, for the agent loop's own turns) and stores the new totals. */
  async add(usage: { inputTokens: number; outputTokens: number }, turns = 0): Promise<void> {
    this.total = { inputTokens: this.total.inputTokens + usage.inputTokens, outputTokens: this.total.outputTokens + usage.outputTokens, turns: this.total.turns + turns };
    await this.store.updateTask(this.taskId, { usage: this.current });
  }
}
