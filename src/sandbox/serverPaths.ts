import { accessSync, constants, existsSync, realpathSync, statSync } from 'node:fs';
import { basename, delimiter, dirname, extname, isAbsolute, join, resolve } from 'node:path';

/** The files that mark the root of a package: its dependencies (node_modules, a virtualenv) lie beside them. */
export const PACKAGE_MARKERS = ['package.json', 'pyproject.toml', 'go.mod', 'Cargo.toml'];

/** Extensions of the script files whose absence is worth saying before a server starts. */
const SCRIPT_EXTENSIONS = new Set(['.js', '.mjs', '.cjs', '.ts', '.mts', '.cts', '.py']);

/** A host path a stdio server's configuration names, and the config key that names it. */
export interface NamedPath {
  path: string;
  /** e.g. `command`, `args[1]` (relative to the server's config). */
  key: string;
}

/** What a stdio server's configuration says about its program: `command`, `args`. */
export interface ServerLaunch {
  command: string;
  args: string[];
}

/** The absolute path of `command`: as given when it holds a `/` (relative to `cwd`), else found on `pathVar`. */
export function findCommand(command: string, pathVar: string, cwd = '/'): string | undefined {
  if (command.includes('/')) {
    const path = resolve(cwd, command);
    return existsSync(path) ? path : undefined;
  }
  for (const dir of pathVar.split(delimiter).filter((entry) => isAbsolute(entry))) {
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // the next one
    }
  }
  return undefined;
}

/** The nearest folder at or above `path` (a file's folder, or the folder itself) that holds a package marker. */
export function packageRoot(path: string): string | undefined {
  let dir = isDirectory(path) ? path : dirname(path);
  for (;;) {
    if (PACKAGE_MARKERS.some((marker) => existsSync(join(dir, marker)))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * The host paths a server's configuration names literally: its command (found on `pathVar`) and
 * every absolute argument without a `{{mcp.KEY}}` template. Templated values are the caller's:
 * they never decide what a sandbox shows.
 */
export function namedPaths(launch: ServerLaunch, pathVar: string): NamedPath[] {
  const named: NamedPath[] = [];
  const command = launch.command.includes('{{') ? undefined : findCommand(launch.command, pathVar);
  if (command) named.push({ path: command, key: 'command' });
  launch.args.forEach((arg, index) => {
    if (isAbsolute(arg) && !arg.includes('{{')) named.push({ path: arg, key: `args[${index}]` });
  });
  return named;
}

/**
 * The installation prefix of a program in a `bin/` folder with a `lib/` beside it (a pyenv or
 * uv-managed Python, an nvm Node.js), which the program needs to run; not `/`, `/usr` (shown
 * anyway) or a home's `.local`, which holds much more than one program.
 */
export function installationPrefix(program: string): string | undefined {
  const bin = dirname(program);
  if (basename(bin) !== 'bin') return undefined;
  const prefix = dirname(bin);
  if (['/', '/usr', '/usr/local'].includes(prefix) || basename(prefix) === '.local') return undefined;
  return isDirectory(join(prefix, 'lib')) ? prefix : undefined;
}

/**
 * What the sandbox shows read-only for a server besides its usual layout: each named path that
 * exists, as named and as its real path, with the package root of each (so `node_modules` or a
 * virtualenv beside the file come along), the installation prefix of its command, and the
 * server's own `readOnlyPaths`.
 */
export function serverReadOnlyPaths(named: NamedPath[], readOnlyPaths: string[] = []): string[] {
  const shown = new Set<string>();
  for (const { path, key } of named) {
    if (!existsSync(path)) continue;
    for (const form of new Set([path, realpathSync(path)])) {
      shown.add(form);
      const root = packageRoot(form);
      if (root && root !== '/') shown.add(root);
      const prefix = key === 'command' ? installationPrefix(form) : undefined;
      if (prefix) shown.add(prefix);
    }
  }
  for (const path of readOnlyPaths) shown.add(path);
  return [...shown];
}

/**
 * Why a stdio server cannot start, said before it is started; undefined when nothing is wrong
 * that can be seen from here. `shows` tells whether the sandbox shows a host path (absent: no
 * sandbox); `keyOf` names a config key for the messages.
 */
export function launchProblem(input: {
  launch: ServerLaunch; pathVar: string; cwd: string; cwdShownAs: string;
  shows?: (path: string) => boolean; keyOf: (key: string) => string;
}): string | undefined {
  const { launch, keyOf, shows } = input;
  const hidden = (path: string, key: string) =>
    `${keyOf(key)} (${path}) exists on the host, but the sandbox does not show it: add its folder to ${keyOf('sandbox.readOnlyPaths')}`;
  if (!launch.command.includes('{{')) {
    const command = findCommand(launch.command, input.pathVar, input.cwd);
    if (!command) {
      return launch.command.includes('/')
        ? `${keyOf('command')} (${launch.command}) does not exist on this host`
        : `${keyOf('command')} "${launch.command}" is not on Airlock's PATH (${input.pathVar}); give its absolute path`;
    }
    if (shows && !shows(command)) return hidden(command, 'command');
  }
  for (const [index, arg] of launch.args.entries()) {
    // Templates are the task's to fill, options and URLs (file:///…) are not paths of the server's.
    if (arg.includes('{{') || arg.startsWith('-') || /^[a-z][a-z0-9+.-]*:/i.test(arg)) continue;
    const key = `args[${index}]`;
    if (isAbsolute(arg)) {
      if (!existsSync(arg)) {
        if (SCRIPT_EXTENSIONS.has(extname(arg))) return `${keyOf(key)} (${arg}) does not exist on this host`;
        continue;
      }
      if (shows && !shows(arg)) return hidden(arg, key);
    } else if (SCRIPT_EXTENSIONS.has(extname(arg)) && !existsSync(resolve(input.cwd, arg))) {
      return `${keyOf(key)} "${arg}" is a relative path, so the server looks for it in its working directory, ${input.cwdShownAs} (the task's workspace), where it does not exist; give its absolute path`;
    }
  }
  return undefined;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
