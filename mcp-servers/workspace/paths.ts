import { lstat, realpath } from 'node:fs/promises';
import path from 'node:path';

/** The path the sandbox shows the workspace as; accepted as an alias for the root. */
export const WORKSPACE_ALIAS = '/workspace';

/** A path argument the workspace refuses; its message names the path and the reason, for the model. */
export class PathRefusedError extends Error {
  override readonly name = 'PathRefusedError';
}

/** A path argument resolved inside the workspace. */
export interface WorkspacePath {
  /** Absolute path inside the root (symlinks not resolved), the one to operate on. */
  absolute: string;
  /** Path relative to the root with `/` separators; `.` for the root itself. Shown to the model. */
  display: string;
}

/**
 * Resolves tool path arguments against one workspace root and refuses any that leave it.
 * Lexical checks first (`..`, absolute paths elsewhere), then the real path of the deepest
 * existing ancestor, so a symlink inside the workspace cannot lead outside it.
 * A race with a concurrent symlink swap is out of scope here: the sandbox is the hard boundary.
 */
export class WorkspacePaths {
  private constructor(
    /** The root as given (absolute, normalised). */
    readonly root: string,
    /** The root with symlinks resolved. */
    readonly realRoot: string,
  ) {}

  /** Builds it for an existing directory; throws when the root is missing or not a directory. */
  static async open(root: string): Promise<WorkspacePaths> {
    const absolute = path.resolve(root);
    const real = await realpath(absolute);
    const stats = await lstat(real);
    if (!stats.isDirectory()) throw new Error(`workspace root ${absolute} is not a directory`);
    return new WorkspacePaths(absolute, real);
  }

  /** Resolves a tool's path argument; throws PathRefusedError when it is outside the workspace. */
  async resolve(input: string): Promise<WorkspacePath> {
    const absolute = this.lexical(input);
    await this.checkRealPath(input, absolute);
    return { absolute, display: this.display(absolute) };
  }

  /** The display form (relative, `/`-separated) of an absolute path inside the root. */
  display(absolute: string): string {
    const relative = path.relative(this.root, absolute);
    return relative === '' ? '.' : relative.split(path.sep).join('/');
  }

  /** Whether a real (symlink-free) path lies inside the real root. */
  containsReal(realPath: string): boolean {
    return isInside(this.realRoot, realPath);
  }

  private lexical(input: string): string {
    if (input.includes('\0')) throw new PathRefusedError(`Path ${JSON.stringify(input)} is refused: it contains a NUL byte.`);
    const trimmed = input.trim() === '' ? '.' : input;
    let absolute: string;
    if (trimmed === WORKSPACE_ALIAS || trimmed.startsWith(`${WORKSPACE_ALIAS}/`)) {
      absolute = path.resolve(this.root, `.${trimmed.slice(WORKSPACE_ALIAS.length)}`);
    } else if (path.isAbsolute(trimmed)) {
      absolute = path.resolve(trimmed);
      // Accept the root's real spelling too (e.g. /private/tmp/... for /tmp/...).
      if (!isInside(this.root, absolute) && isInside(this.realRoot, absolute)) {
        absolute = path.join(this.root, path.relative(this.realRoot, absolute));
      }
    } else {
      absolute = path.resolve(this.root, trimmed);
    }
    if (!isInside(this.root, absolute)) {
      const why = path.isAbsolute(trimmed)
        ? `it is outside the workspace (paths are relative to the workspace root, or absolute under ${WORKSPACE_ALIAS})`
        : 'it climbs out of the workspace with ".."';
      throw new PathRefusedError(`Path ${JSON.stringify(input)} is refused: ${why}.`);
    }
    return absolute;
  }

  private async checkRealPath(input: string, absolute: string): Promise<void> {
    // Walk up to the deepest ancestor that exists (write_file may name a path that does not yet exist).
    let existing = absolute;
    for (;;) {
      const stats = await lstatOrUndefined(existing);
      if (stats) {
        let real: string;
        try {
          real = await realpath(existing);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          throw new PathRefusedError(
            `Path ${JSON.stringify(input)} is refused: ${this.display(existing)} is a symlink that cannot be resolved (${code ?? 'error'}).`,
          );
        }
        if (!this.containsReal(real)) {
          throw new PathRefusedError(
            `Path ${JSON.stringify(input)} is refused: ${this.display(existing)} is a symlink that leads outside the workspace.`,
          );
        }
        return;
      }
      const parent = path.dirname(existing);
      if (parent === existing || !isInside(this.root, parent)) return;
      existing = parent;
    }
  }
}

/** Whether `candidate` is `root` or below it (both absolute and normalised). */
export function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === '' || (!relative.startsWith(`..${path.sep}`) && relative !== '..' && !path.isAbsolute(relative));
}

async function lstatOrUndefined(target: string) {
  try {
    return await lstat(target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw error;
  }
}
