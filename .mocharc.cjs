// mocha's configuration. The whole suite by default; only the files named on the command line when
// some are (`npm test -- test/unit/config.test.ts`): mocha adds a config file's `spec` to the files
// it is given, so the default spec is left out when there are any. Whether there are is read the
// way mocha reads its arguments, from mocha's own list of options, so that an option's value
// (`--grep x`, `-R spec`) is not taken for a file.
const { parseArgs } = require('node:util');
const { aliases, types } = require('mocha/lib/cli/run-option-metadata.cjs');

/** The positional arguments of this mocha run: the files and globs given on the command line. */
function filesGiven(args) {
  const options = {};
  for (const [type, names] of Object.entries(types)) {
    for (const name of names) {
      const option = { type: type === 'boolean' ? 'boolean' : 'string', multiple: type !== 'boolean' };
      options[name] = option;
      for (const alias of aliases[name] ?? []) {
        if (alias.length === 1) option.short = alias;
        else options[alias] = option;
      }
    }
  }
  // Unknown options (Node's flags, passed on by mocha) take no value here, as in mocha.
  return parseArgs({ args, options, strict: false, allowPositionals: true }).positionals;
}

module.exports = {
  'node-option': ['import=tsx'],
  extension: ['ts'],
  ...(filesGiven(process.argv.slice(2)).length ? {} : { spec: ['test/**/*.test.ts'] }),
  timeout: 20000,
  exit: true,
  reporter: './test/support/summaryReporter.cjs',
};
