import { existsSync, lstatSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import { PROJECT_ROOT } from '../projectRoot.js';

/** The system directories shown read-only (as symlinks where the host has symlinks, as on merged-/usr systems). */
const SYSTEM_PATHS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc'];


/** The shown system directory whose entries other users may not read are hidden as well. */
const SYSTEM_CONFIG_DIR = '/etc';

/** What a sandbox shows of the host: the same for every process of one Airlock. */
export interface BwrapLayout {
  /** Directories made inside (mode 0755), so that what is shown below them can be reached; parents first. */
  dirs: string[];
  /** Host paths shown read-only at the same path, parents before children. */
  readOnly: string[];
  /** Symlinks made inside: `path` → `target`, e.g. `/bin` → `usr/bin`. */
  symlinks: Array<{ path: string; target: string }>;
  /** Directories under a read-only path that are hidden behind an empty tmpfs (/etc/ssl/private). */
  hiddenDirs: string[];
  /** Files under a read-only path that are hidden behind an empty file (/etc/shadow). */
  hiddenFiles: string[];
}

/** What a layout is made from. */
export interface LayoutOptions {
  dataDir: string;
  configPath?: string;
  readOnlyPaths: string[];
}

/** Past this many layouts with extra paths, the cache starts again (each distinct server config makes one). */
const MAX_CACHED_LAYOUTS = 256;

/**
 * The layouts of one Airlock: the base one, and the base with a stdio server's own paths shown too,
 * made once per distinct set of paths.
 */
export class SandboxLayouts {
  private readonly cache = new Map<string, BwrapLayout>();

  private constructor(readonly base: BwrapLayout, private readonly options: LayoutOptions | undefined) {}

  /** The layouts for this host (sandboxLayout). */
  static forHost(options: LayoutOptions): SandboxLayouts {
    return new SandboxLayouts(sandboxLayout(options), options);
  }

  /** One fixed layout, whatever extra paths are asked for (tests). */
  static fixed(layout: BwrapLayout): SandboxLayouts {
    return new SandboxLayouts(layout, undefined);
  }

  /** The base layout with `extra` host paths shown read-only too. */
  with(extra: readonly string[]): BwrapLayout {
    if (!extra.length || !this.options) return this.base;
    const key = JSON.stringify(extra);
    let layout = this.cache.get(key);
    if (!layout) {
      if (this.cache.size >= MAX_CACHED_LAYOUTS) this.cache.clear();
      layout = sandboxLayout({ ...this.options, readOnlyPaths: [...this.options.readOnlyPaths, ...extra] });
      this.cache.set(key, layout);
    }
    return layout;
  }
}

/** Whether a process in a sandbox of `layout` sees the host path `path` (as the host has it). */
export function layoutShows(layout: BwrapLayout, path: string): boolean {
  const forms = new Set([path, realOrSelf(path)]);
  const hidden = [...layout.hiddenDirs, ...layout.hiddenFiles];
  return [...forms].some((form) => layout.readOnly.some((shown) => isWithin(shown, form)) && !hidden.some((dir) => isWithin(dir, form)));
}

/**
 * The layout for this host: the system directories, Node.js, Airlock's checkout and node_modules,
 * and `readOnlyPaths`, all read-only, with the entries of /etc that other users may not read hidden.
 * Airlock's data directory and config file are never shown, and not named either: a shown directory
 * that holds one of them is not bound whole but made empty and filled with its other entries (as
 * they are at start-up), so no mount inside (`/proc/self/mountinfo`) gives away where they are.
 */
export function sandboxLayout(options: LayoutOptions): BwrapLayout {
  const layout: BwrapLayout = { dirs: [], readOnly: [], symlinks: [], hiddenDirs: [], hiddenFiles: [] };
  const secret = [realOrSelf(options.dataDir), ...(options.configPath ? [realOrSelf(options.configPath)] : [])];
  const covered = (path: string) => layout.readOnly.some((shown) => isWithin(shown, path));
  const show = (path: string): void => {
    if (covered(path) || secret.some((hidden) => isWithin(hidden, path))) return;
    if (!secret.some((hidden) => isWithin(path, hidden))) {
      layout.readOnly.push(path);
      return;
    }
    // A shown directory that holds the data directory or the config file: its entries one by one.
    layout.dirs.push(path);
    for (const name of readdirOrEmpty(path)) {
      const entry = join(path, name);
      const stats = lstatOrUndefined(entry);
      if (stats?.isSymbolicLink()) layout.symlinks.push({ path: entry, target: readlinkSync(entry) });
      else if (stats) show(entry);
    }
  };
  for (const path of SYSTEM_PATHS) {
    const stats = lstatOrUndefined(path);
    if (stats?.isSymbolicLink()) layout.symlinks.push({ path, target: readlinkSync(path) });
    else if (stats?.isDirectory()) show(path);
  }
  // A resolv.conf that links elsewhere (/run/systemd/resolve/…) must come along, or DNS breaks.
  const resolvConf = realOrUndefined('/etc/resolv.conf');
  if (resolvConf) show(resolvConf);
  // Node's installation prefix (bin/node, lib/node_modules/npm), so `node` and `npx` work.
  const node = realpathSync(process.execPath);
  const prefix = dirname(dirname(node));
  show(prefix === '/' ? node : prefix);
  // Airlock's own code (the built-in server, the fixtures) and the packages it runs with.
  const project = realpathSync(PROJECT_ROOT);
  show(project);
  const modules = realOrUndefined(join(project, 'node_modules'));
  if (modules) show(modules);
  for (const path of options.readOnlyPaths) {
    const real = realOrUndefined(path);
    if (real) show(real);
  }
  layout.readOnly = layout.readOnly.filter((path, index, all) => !all.some((other, at) => at !== index && other !== path && isWithin(other, path)));
  layout.readOnly.sort(byDepth);
  layout.dirs = parentDirs(layout);
  // Inside runs an unprivileged user, but a host whose /etc holds files only root may read keeps
  // them hidden even from a sandbox started by root without the user switch.
  if (layout.readOnly.includes(SYSTEM_CONFIG_DIR)) hidePrivateEntries(SYSTEM_CONFIG_DIR, layout);
  return layout;
}

/**
 * Every directory that must be made for the shown paths to be reachable, parents first: the
 * expanded directories and the ancestors of each shown path that no bind provides. bubblewrap
 * would make missing parents itself, but with a mode the sandbox's unprivileged user cannot pass.
 */
function parentDirs(layout: BwrapLayout): string[] {
  const dirs = new Set<string>();
  const provided = (path: string) => layout.readOnly.some((shown) => isWithin(shown, path));
  const add = (path: string) => {
    for (let dir = dirname(path); dir !== '/' && !provided(dir); dir = dirname(dir)) dirs.add(dir);
  };
  for (const dir of layout.dirs) {
    if (!provided(dir)) dirs.add(dir);
    add(dir);
  }
  for (const path of layout.readOnly) add(path);
  for (const { path } of layout.symlinks) add(path);
  return [...dirs].sort(byDepth);
}

/** Adds every directory and file under `dir` that other users may not read to the hidden ones; symlinks are not followed. */
function hidePrivateEntries(dir: string, layout: BwrapLayout): void {
  for (const name of readdirOrEmpty(dir)) {
    const path = join(dir, name);
    const stats = lstatOrUndefined(path);
    if (!stats || stats.isSymbolicLink()) continue;
    const othersMayRead = (stats.mode & 0o004) !== 0 && (!stats.isDirectory() || (stats.mode & 0o001) !== 0);
    if (stats.isDirectory()) {
      if (othersMayRead) hidePrivateEntries(path, layout);
      else layout.hiddenDirs.push(path);
    } else if (!othersMayRead) {
      layout.hiddenFiles.push(path);
    }
  }
}

/** Whether `path` is `root` or inside it (both absolute). */
export function isWithin(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

function byDepth(a: string, b: string): number {
  return a.split('/').length - b.split('/').length || a.localeCompare(b);
}

function readdirOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function realOrUndefined(path: string): string | undefined {
  return existsSync(path) ? realpathSync(path) : undefined;
}

/** The real path, or the path as given when it does not exist (yet). */
function realOrSelf(path: string): string {
  return realOrUndefined(path) ?? path;
}
