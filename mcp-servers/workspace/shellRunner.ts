import { accessSync, constants } from 'node:fs';
import path from 'node:path';

import { execa } from 'execa';

/** Output kept per stream (stdout, stderr); beyond it the middle is dropped and the result says so. */
export const MAX_OUTPUT_BYTES = 1024 * 1024;
/** Time between SIGTERM and SIGKILL when a command is stopped. */
export const KILL_GRACE_MS = 2000;

const OOM_FIRST_THEN_EXEC = '{ echo 1000 > /proc/self/oom_score_adj; } 2>/dev/null; exec "$0" -c "$1"';

/** One command to run. */
export interface ShellRunRequest {
  /** The command line, given to the shell as `-c` text. */
  command: string;
  /** Absolute working directory (already checked to be inside the workspace). */
  cwd: string;
  /** Wall-clock limit; the process group is stopped when it passes. */
  timeoutMs: number;
  /** Aborted when the caller cancels the call; the process group is stopped. */
  signal?: AbortSignal;
}

/** What a command did. */
export interface ShellRunResult {
  /** Exit status, or null when it ended by a signal or never started. */
  exitCode: number | null;
  /** The signal that ended it, if one did. */
  signal: string | null;
  /** Whether it was stopped for running past timeoutMs. */
  timedOut: boolean;
  /** Whether it was stopped because the call was cancelled. */
  cancelled: boolean;
  /** Why it could not start, when it could not. */
  startError?: string;
  /** Standard output (UTF-8), with a note in the middle when it was cut. */
  stdout: string;
  /** Standard error (UTF-8), with a note in the middle when it was cut. */
  stderr: string;
  /** Whether stdout went past MAX_OUTPUT_BYTES. */
  stdoutTruncated: boolean;
  /** Whether stderr went past MAX_OUTPUT_BYTES. */
  stderrTruncated: boolean;
  /** Wall-clock duration. */
  durationMs: number;
}

/**
 * Runs shell commands, each in its own process group so a timeout, a cancellation or the
 * server's shutdown stops the command with everything it started. Background jobs (`&`) do not
 * outlive their command: the group is killed once the shell exits, which is also what lets the
 * output pipes close.
 */
export class ShellRunner {
  private readonly running = new Set<number>();

  constructor(
    /** The shell binary (`bash` when available). */
    readonly shell: string = findShell(),
    private readonly maxOutputBytes = MAX_OUTPUT_BYTES,
  ) {}

  /** Runs one command to completion (or until stopped); never rejects. */
  async run(request: ShellRunRequest): Promise<ShellRunResult> {
    const startedAt = Date.now();
    const stdout = new CappedOutput(this.maxOutputBytes);
    const stderr = new CappedOutput(this.maxOutputBytes);
    // `<shell> -c <command>`, after the shell marks itself the first process the kernel's OOM killer
    // picks: a command that runs its sandbox out of memory dies, not this server (Linux; elsewhere a no-op).
    const subprocess = execa(this.shell, ['-c', OOM_FIRST_THEN_EXEC, this.shell, request.command], {
      cwd: request.cwd,
      // The server's env is the task's env + secrets by design; the command gets exactly that.
      env: process.env,
      extendEnv: false,
      stdin: 'ignore', // the server's own stdin is the MCP channel
      buffer: false,
      reject: false,
      detached: true, // own process group, so the whole tree can be signalled
      cleanup: false, // execa skips it for detached children anyway; stopAll() covers shutdown
    });
    subprocess.stdout?.on('data', (chunk: Buffer | string) => stdout.push(chunk));
    subprocess.stderr?.on('data', (chunk: Buffer | string) => stderr.push(chunk));

    const pid = subprocess.pid;
    let timedOut = false;
    let cancelled = false;
    let graceTimer: NodeJS.Timeout | undefined;
    const stop = () => {
      if (pid === undefined || graceTimer) return;
      signalGroup(pid, 'SIGTERM');
      graceTimer = setTimeout(() => signalGroup(pid, 'SIGKILL'), KILL_GRACE_MS);
    };
    const timeoutTimer = setTimeout(() => {
      timedOut = true;
      stop();
    }, request.timeoutMs);
    const onAbort = () => {
      cancelled = true;
      stop();
    };
    request.signal?.addEventListener('abort', onAbort, { once: true });
    if (request.signal?.aborted) onAbort();
    if (pid !== undefined) {
      this.running.add(pid);
      // Leftover group members (background jobs) would hold the pipes open and outlive the call.
      subprocess.once('exit', () => signalGroup(pid, 'SIGKILL'));
    }

    try {
      const result = await subprocess;
      const started = pid !== undefined && !(result.failed && result.exitCode === undefined && result.signal === undefined);
      return {
        exitCode: result.exitCode ?? null,
        signal: result.signal ?? null,
        timedOut,
        cancelled,
        ...(started ? {} : { startError: result.shortMessage ?? result.message ?? 'the command could not be started' }),
        stdout: stdout.text(),
        stderr: stderr.text(),
        stdoutTruncated: stdout.truncated,
        stderrTruncated: stderr.truncated,
        durationMs: Date.now() - startedAt,
      };
    } finally {
      clearTimeout(timeoutTimer);
      clearTimeout(graceTimer);
      request.signal?.removeEventListener('abort', onAbort);
      if (pid !== undefined) this.running.delete(pid);
    }
  }

  /** Kills every running command's process group at once (SIGKILL); safe to call from an exit handler. */
  stopAll(): void {
    for (const pid of this.running) signalGroup(pid, 'SIGKILL');
    this.running.clear();
  }

  /** How many commands are running. */
  get runningCount(): number {
    return this.running.size;
  }
}

/** `bash` from PATH (or /bin/bash), else `/bin/sh`. */
export function findShell(): string {
  const candidates = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, 'bash')), '/bin/bash'];
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // try the next one
    }
  }
  return '/bin/sh';
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone
  }
}

/** Keeps all of a stream up to a byte cap; past it, the first and last halves with a note between. */
class CappedOutput {
  private chunks: Buffer[] = [];
  private size = 0;
  private head: Buffer | undefined;
  private total = 0;

  constructor(private readonly maxBytes: number) {}

  /** Whether anything was dropped. */
  get truncated(): boolean {
    return this.head !== undefined;
  }

  push(chunk: Buffer | string): void {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    this.total += buffer.length;
    this.chunks.push(buffer);
    this.size += buffer.length;
    const half = Math.floor(this.maxBytes / 2);
    if (this.head === undefined && this.size > this.maxBytes) {
      const all = Buffer.concat(this.chunks);
      this.head = all.subarray(0, half);
      this.chunks = [all.subarray(all.length - half)];
      this.size = half;
    } else if (this.head !== undefined && this.size > 2 * half) {
      const tail = Buffer.concat(this.chunks);
      this.chunks = [tail.subarray(tail.length - half)];
      this.size = half;
    }
  }

  text(): string {
    const kept = Buffer.concat(this.chunks);
    if (this.head === undefined) return kept.toString('utf8');
    const tail = kept.subarray(Math.max(0, kept.length - Math.floor(this.maxBytes / 2)));
    const omitted = this.total - this.head.length - tail.length;
    return `${this.head.toString('utf8')}\n[... output truncated: ${omitted} bytes omitted of ${this.total} ...]\n${tail.toString('utf8')}`;
  }
}
