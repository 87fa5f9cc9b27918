// Starts the store thread (storeWorker.ts). Plain JavaScript, so that it runs whether or not the
// thread has a TypeScript loader: `npm start` registers tsx on the main thread only.
try {
  await import('./storeWorker.ts');
} catch (err) {
  if (err?.code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw err;
  const { register } = await import('tsx/esm/api');
  register();
  // A module that failed to load stays failed under its URL: the query makes it a new one.
  await import('./storeWorker.ts?tsx');
}
