#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so `airlock` works from a checkout without a build step.
import { register } from 'tsx/esm/api';
register();
process.env.AIRLOCK_CLI = '1';
await import('../src/cli.ts');
