import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { StartupError } from '../startupError.js';

/** The file whose lock a serving Airlock holds, in its data directory. */
export const LOCK_FILE = 'airlock.lock';
/** The PID of the Airlock that holds the lock, for the message of one that cannot have it. */
export const PID_FILE = 'airlock.pid';

/** Another process holds the data directory's lock. */
export class DataDirInUseError extends StartupError {
  constructor(readonly dataDir: string, readonly pid: number | undefined) {
    super(`The data directory ${dataDir} is in use by another Airlock (${pid === undefined ? 'its PID is unknown' : `PID ${pid}`}). Stop it first, or give this one a data directory of its own (--data-dir or AIRLOCK_DATA_DIR).`);
    this.name = 'DataDirInUseError';
  }
}

/**
 * An exclusive lock on a data directory, held for the life of one serving process: two Airlocks
 * on one data directory would each take the other's running tasks for leftovers of a crash.
 *
 * The lock is SQLite's own exclusive lock on `airlock.lock` (a POSIX record lock, through the
 * connection of an open `BEGIN EXCLUSIVE` transaction). The kernel drops it when the process ends,
 * however it ends, so there is no stale lock to detect and no PID to trust; SQLite also refuses a
 * second connection in the same process. `airlock.pid` beside it only names the holder in the
 * message of the process that was refused. The database itself (`airlock.db`) is not locked, so
 * `airlock keys …` works while a server runs.
 */
export class DataDirLock {
  private released = false;

  private constructor(readonly dataDir: string, private readonly db: Database.Database) {}

  /** Takes the lock at once, or throws DataDirInUseError naming the holder's PID. Creates the directory if missing. */
  static acquire(dataDir: string): DataDirLock {
    mkdirSync(dataDir, { recursive: true });
    // timeout 0: a held lock is an answer, not something to wait for.
    const db = new Database(join(dataDir, LOCK_FILE), { timeout: 0 });
    try {
      // The journal in memory: nothing is ever written, and no airlock.lock-journal lies about.
      db.pragma('journal_mode = MEMORY');
      db.exec('BEGIN EXCLUSIVE');
    } catch (err) {
      db.close();
      if ((err as { code?: string }).code === 'SQLITE_BUSY') throw new DataDirInUseError(dataDir, readPid(dataDir));
      throw err;
    }
    writeFileSync(join(dataDir, PID_FILE), `${process.pid}\n`);
    return new DataDirLock(dataDir, db);
  }

  /** Gives the lock up (the PID file goes too); a second call does nothing. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (readPid(this.dataDir) === process.pid) rmSync(join(this.dataDir, PID_FILE), { force: true });
    this.db.exec('ROLLBACK');
    this.db.close();
  }
}

function readPid(dataDir: string): number | undefined {
  try {
    const text = readFileSync(join(dataDir, PID_FILE), 'utf8');
    return /^\d+\n?$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}
