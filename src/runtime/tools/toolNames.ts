import { createHash } from 'node:crypto';

/** Names the model may see: the Anthropic API's tool-name rule. */
export const TOOL_NAME_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;
const MAX_LENGTH = 64;
const SEPARATOR = '__';

/** Where a tool the model sees really lives. */
export interface ToolAddress {
  server: string;
  tool: string;
}

/**
 * The one module that builds and parses the tool names the model sees (ARCHITECTURE.md): built-in
 * tools keep their plain names, a configured server's tools are `<server>__<tool>`, sanitised to
 * TOOL_NAME_PATTERN. Names that collide or run past 64 characters get a short hash suffix that
 * depends only on server and tool, so a name is stable across tasks and restarts.
 */
export class ToolNameTable {
  private readonly byName = new Map<string, ToolAddress>();
  private readonly byAddress = new Map<string, string>();

  /** The model-facing name of a tool, assigning one on first use. */
  add(address: ToolAddress, options: { plain?: boolean } = {}): string {
    const key = addressKey(address);
    const existing = this.byAddress.get(key);
    if (existing) return existing;
    const base = options.plain ? sanitise(address.tool) : `${sanitise(address.server)}${SEPARATOR}${sanitise(address.tool)}`;
    // The plain form is used only when it is unambiguous whatever else is listed: nothing was
    // sanitised away, it fits, and (for server tools) the server name holds no separator, so the
    // name splits back one way. Otherwise the hash decides, and the order tools are listed in does not.
    const unambiguous = base.length <= MAX_LENGTH
      && (options.plain ? sanitise(address.tool) === address.tool : sanitise(address.server) === address.server && sanitise(address.tool) === address.tool && !address.server.includes(SEPARATOR));
    let name = unambiguous && !this.byName.has(base) ? base : withHash(base, key);
    // A second collision (two hashed names alike) is astronomically rare; keep it correct anyway.
    for (let i = 2; this.byName.has(name); i++) name = withHash(base, `${key}\u0000${i}`);
    this.byName.set(name, address);
    this.byAddress.set(key, name);
    return name;
  }

  /** The tool behind a model-facing name, if the table knows it. */
  resolve(name: string): ToolAddress | undefined {
    return this.byName.get(name);
  }

  /** The model-facing name already assigned to a tool. */
  nameOf(address: ToolAddress): string | undefined {
    return this.byAddress.get(addressKey(address));
  }
}

function addressKey(address: ToolAddress): string {
  return `${address.server}\u0000${address.tool}`;
}

function sanitise(text: string): string {
  const clean = text.replace(/[^a-zA-Z0-9_-]/g, '_');
  return clean.length ? clean : '_';
}

function withHash(base: string, key: string): string {
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 8);
  return `${base.slice(0, MAX_LENGTH - hash.length - 1)}_${hash}`;
}
