// Starts the store thread (storeWorker.ts) from the TypeScript sources of a checkout; the build
// (dist/) starts the compiled storeWorker.js instead. Plain JavaScript, so that it runs whether or
// not the thread has a TypeScript loader: `npm start` registers tsx on the main thread only, and a
// thread does not inherit that. Node's own type stripping (on by default from 22.18) is not enough:
// the sources import each other as `.js`, which only tsx maps to the `.ts` files.
import { register } from 'tsx/esm/api';

register();
await import('./storeWorker.ts');
