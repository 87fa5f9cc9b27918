import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';

/**
 * Removes a test's data directory, first detaching the workspace volumes an Airlock left mounted
 * in it (one killed with SIGKILL never unmounts them; the next start would adopt them).
 */
export async function removeDataDir(dir: string): Promise<void> {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((line) => line.split(' ')[4]).filter((point): point is string => Boolean(point?.startsWith(`${dir}/`)));
  for (const point of mounts.reverse()) {
    try {
      execFileSync('umount', ['-l', point]);
    } catch {
      // already gone
    }
  }
  await rm(dir, { recursive: true, force: true });
}
