import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { StartupError } from './startupError.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * Holds the requests that arrive between listen and the end of start-up (the first key, the
 * recovery of a previous process's tasks), so that none sees the state before them; then lets
 * them and every later request through.
 */
export class StartupGate {
  private opened = false;
  private readonly held: Array<() => void> = [];

  /** `handler`, behind the gate. */
  wrap(handler: Handler): Handler {
    return (req, res) => {
      if (this.opened) handler(req, res);
      else this.held.push(() => handler(req, res));
    };
  }

  /** Lets the held requests through, in arrival order, and all later ones at once. */
  open(): void {
    this.opened = true;
    for (const release of this.held.splice(0)) release();
  }
}

/** Listens on host:port; any failure is a StartupError whose one line says what went wrong and what to change. */
export async function listen(server: Server, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new StartupError(listenErrorMessage(err, host, port), { cause: err }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export function listenErrorMessage(err: Error, host: string, port: number): string {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const code = (err as NodeJS.ErrnoException).code;
  const hint = 'choose another with --port / --host (or PORT / HOST)';
  if (code === 'EADDRINUSE') return `Cannot listen on ${where}: the address is already in use (EADDRINUSE), by another process; ${hint}.`;
  if (code === 'EACCES') return `Cannot listen on ${where}: permission denied (EACCES); ports below 1024 need privileges; ${hint}.`;
  if (code === 'EADDRNOTAVAIL') return `Cannot listen on ${where}: the address is not one of this machine's (EADDRNOTAVAIL); ${hint}.`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `Cannot listen on ${where}: the host name does not resolve (${code}); ${hint}.`;
  return `Cannot listen on ${where}: ${err.message.split('\n')[0]}${code ? ` (${code})` : ''}.`;
}
