import type { ChildProcess } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { ReadBuffer, SdkError, SdkErrorCode, serializeMessage } from '@modelcontextprotocol/client';
import type { JSONRPCMessage, Transport } from '@modelcontextprotocol/client';
import type { SandboxedSpawn } from '../sandbox/processSandbox.js';
import { spawnSandboxed } from '../sandbox/spawnSandboxed.js';

/** How long close() waits after ending stdin, and again after SIGTERM, before the next step. */
const CLOSE_STEP_MS = 2_000;
/** Messages handed on from the read buffer before the event loop gets a turn. */
const MESSAGES_PER_TURN = 64;

/**
 * The stdio client transport for a process that Airlock prepared (sandboxed or not): newline-
 * delimited JSON-RPC over the process's stdin and stdout, as the SDK's StdioClientTransport speaks
 * it, but started from a SandboxedSpawn: with exactly its environment (nothing of Airlock's is
 * merged in) and its options written to file descriptors 3 and up.
 */
export class ProcessTransport implements Transport {
  private process: ChildProcess | undefined;
  private readonly readBuffer = new ReadBuffer();
  private draining = false;
  private closeWhenDrained = false;
  /** A response read in a turn that handed on notifications: it is handed on first thing next turn. */
  private held: JSONRPCMessage | undefined;
  /** close() was called: what the process still writes is read (it never blocks on a full pipe) and dropped. */
  private discarding = false;
  /** The process's stderr, available before start() so that nothing it prints early is lost. */
  readonly stderr = new PassThrough();

  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  constructor(private readonly launch: SandboxedSpawn) {}

  /** The process's pid once started. */
  get pid(): number | undefined {
    return this.process?.pid;
  }

  start(): Promise<void> {
    if (this.process) throw new Error('ProcessTransport already started');
    return new Promise((resolve, reject) => {
      const child = spawnSandboxed(this.launch, ['pipe', 'pipe', 'pipe']);
      this.process = child;
      child.once('error', (error) => {
        reject(error);
        this.onerror?.(error);
      });
      child.once('spawn', () => resolve());
      child.once('close', () => {
        this.process = undefined;
        // What the server said before it exited is handed on before the close.
        if (this.draining) this.closeWhenDrained = true;
        else this.onclose?.();
      });
      child.stdin!.on('error', (error) => this.onerror?.(error));
      child.stdout!.on('error', (error) => this.onerror?.(error));
      child.stdout!.on('data', (chunk: Buffer) => this.receive(chunk));
      child.stderr!.pipe(this.stderr);
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.process?.stdin;
    if (!stdin) return Promise.reject(new SdkError(SdkErrorCode.NotConnected, 'Not connected'));
    return new Promise((resolve) => {
      if (stdin.write(serializeMessage(message))) resolve();
      else stdin.once('drain', () => resolve());
    });
  }

  /** Ends stdin, then sends SIGTERM, then SIGKILL, each after CLOSE_STEP_MS without an exit. */
  async close(): Promise<void> {
    const child = this.process;
    this.process = undefined;
    this.discarding = true;
    this.readBuffer.clear();
    this.held = undefined;
    child?.stdout?.resume();
    if (child && child.exitCode === null && child.signalCode === null) {
      const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
      const waitStep = () => Promise.race([closed, new Promise((resolve) => setTimeout(resolve, CLOSE_STEP_MS).unref())]);
      child.stdin?.end();
      await waitStep();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await waitStep();
      }
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }

  private receive(chunk: Buffer): void {
    if (this.discarding) return;
    try {
      this.readBuffer.append(chunk);
    } catch (error) {
      // Past the buffer limit: the stream cannot be trusted any more.
      this.onerror?.(error as Error);
      void this.close();
      return;
    }
    if (!this.draining) this.drain();
  }

  // Hands buffered messages on, at most MESSAGES_PER_TURN before the event loop gets a turn; while
  // a backlog waits, stdout is paused, so a flooding server blocks on its own full pipe instead of
  // holding the loop (and every other task's requests) for the whole flood.
  private drain(): void {
    this.draining = false;
    for (let handled = 0; handled < MESSAGES_PER_TURN; handled++) {
      let message: JSONRPCMessage | null;
      try {
        message = this.held ?? this.readBuffer.readMessage();
      } catch (error) {
        this.onerror?.(error as Error);
        continue;
      }
      this.held = undefined;
      if (message === null) {
        this.process?.stdout?.resume();
        if (this.closeWhenDrained) {
          this.closeWhenDrained = false;
          this.onclose?.();
        }
        return;
      }
      // The SDK hands a notification to its handler a microtask later, a response at once: a
      // response handed on in the same turn as the notifications before it would overtake them,
      // and a call's last progress would be dropped as of a token it no longer knows.
      if (handled > 0 && !('method' in message)) {
        this.held = message;
        break;
      }
      this.onmessage?.(message);
    }
    this.draining = true;
    this.process?.stdout?.pause();
    setImmediate(() => this.drain());
  }
}
