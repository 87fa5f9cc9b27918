/**
 * Why a run was aborted: the user cancelled it, the service is shutting down, or the service is
 * shutting down while the task waits for a person — then the run is suspended, not ended: the task
 * stays `awaiting_approval` with its approvals pending, and the next process resumes it.
 */
export class RunAbort extends Error {
  constructor(readonly kind: 'cancel' | 'shutdown' | 'suspend') {
    super(kind === 'cancel' ? 'Task cancelled' : 'Airlock is shutting down');
    this.name = 'RunAbort';
  }
}

/** Whether a signal was aborted to suspend the run (its pending approvals must stay pending). */
export function isSuspended(signal: AbortSignal): boolean {
  return signal.aborted && signal.reason instanceof RunAbort && signal.reason.kind === 'suspend';
}
