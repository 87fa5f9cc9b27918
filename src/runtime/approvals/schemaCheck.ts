import { Ajv } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';

// ajv-formats is CommonJS with a default export that NodeNext sees one level down.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

/** One schema violation, with its path under `prefix`. */
export interface SchemaProblem {
  path: string;
  message: string;
}

/**
 * Checks values against the JSON Schemas MCP servers declare: draft-07 or 2020-12 (zod 4 emits
 * 2020-12), each with its own Ajv, formats included, compiled once per schema.
 */
export class SchemaCheck {
  private readonly draft07: Ajv;
  private readonly draft2020: Ajv2020;
  private readonly compiled = new Map<string, ValidateFunction>();

  /** `useDefaults`: a checked value gets the schema's defaults filled in (it is modified). */
  constructor(options: { useDefaults?: boolean } = {}) {
    const ajvOptions = { allErrors: true, strict: false, logger: false as const, useDefaults: options.useDefaults ?? false };
    this.draft07 = new Ajv(ajvOptions);
    this.draft2020 = new Ajv2020(ajvOptions);
    addFormats(this.draft07);
    addFormats(this.draft2020);
  }

  /** The problems of `value` (none when it is valid); throws when the schema itself cannot be compiled. */
  problems(schema: Record<string, unknown>, value: unknown, prefix: string): SchemaProblem[] {
    const key = JSON.stringify(schema);
    let validate = this.compiled.get(key);
    if (!validate) {
      const { $schema, ...body } = schema;
      validate = (typeof $schema === 'string' && $schema.includes('2020-12') ? this.draft2020 : this.draft07).compile(body);
      this.compiled.set(key, validate);
    }
    if (validate(value)) return [];
    return (validate.errors ?? []).map((e) => ({ path: `${prefix}${e.instancePath}`, message: e.message ?? 'is invalid' }));
  }
}
