import { expect } from 'chai';
import { MIN_PROCESS_SECRET_CHARS, Scrubber, SecretRegistry, StreamScrubber } from '../../src/runtime/security/scrubber.js';

describe('Scrubber', () => {
  describe('#text()', () => {
    it('replaces every occurrence of a value with [secret:KEY]', () => {
      const scrubber = new Scrubber({ TOKEN: 'tok-123', PASSWORD: 'hunter2' });
      expect(scrubber.text('token tok-123 and hunter2, again tok-123')).to.equal('token [secret:TOKEN] and [secret:PASSWORD], again [secret:TOKEN]');
    });

    it('replaces the longer value whole when one secret contains another', () => {
      const scrubber = new Scrubber({ SHORT: 'abc', LONG: 'xxabcxx' });
      expect(scrubber.text('[xxabcxx] [abc]')).to.equal('[[secret:LONG]] [[secret:SHORT]]');
    });

    it('gives the same result whichever order the secrets are declared in', () => {
      const scrubber = new Scrubber([['LONG', 'xxabcxx'], ['SHORT', 'abc']]);
      expect(scrubber.text('xxabcxx abc')).to.equal('[secret:LONG] [secret:SHORT]');
    });

    it('does not scrub a replacement again when a secret value looks like part of one', () => {
      const scrubber = new Scrubber({ A: 'secret', B: 'A]' });
      expect(scrubber.text('secret A]')).to.equal('[secret:A] [secret:B]');
    });

    it('replaces the JSON-escaped form of a value', () => {
      const value = 'pa"ss\\word\n';
      const scrubber = new Scrubber({ PW: value });
      const json = JSON.stringify({ password: value });
      expect(json).not.to.include(value);
      expect(scrubber.text(json)).to.equal('{"password":"[secret:PW]"}');
    });

    it('replaces the URL-encoded form of a value', () => {
      const value = 'p@ss w/rd&x=1';
      const scrubber = new Scrubber({ PW: value });
      const url = `https://example.com/login?password=${encodeURIComponent(value)}`;
      expect(scrubber.text(url)).to.equal('https://example.com/login?password=[secret:PW]');
    });

    it('treats regular-expression characters in a value literally', () => {
      const scrubber = new Scrubber({ RX: 'a.c*(d)' });
      expect(scrubber.text('abcd a.c*(d)')).to.equal('abcd [secret:RX]');
    });

    it('ignores an empty secret value instead of matching everywhere', () => {
      const scrubber = new Scrubber({ EMPTY: '', REAL: 'xyz' });
      expect(scrubber.text('abc xyz')).to.equal('abc [secret:REAL]');
    });

    it('returns the input unchanged and reports empty when there are no secrets', () => {
      const scrubber = new Scrubber({ EMPTY: '' });
      expect(scrubber.empty).to.equal(true);
      expect(scrubber.text('anything at all')).to.equal('anything at all');
    });
  });

  describe('#value()', () => {
    it('scrubs strings in nested objects and arrays, object keys included', () => {
      const scrubber = new Scrubber({ KEY: 's3cr3t' });
      const input = { outer: { list: ['s3cr3t', { deep: 'x s3cr3t y' }], s3cr3t: 'key holds it' }, plain: 'ok' };
      expect(scrubber.value(input)).to.deep.equal({
        outer: { list: ['[secret:KEY]', { deep: 'x [secret:KEY] y' }], '[secret:KEY]': 'key holds it' },
        plain: 'ok',
      });
    });

    it('leaves numbers, booleans and null as they are', () => {
      const scrubber = new Scrubber({ KEY: '42' });
      const input = { n: 42, b: true, f: false, z: null, s: '42', list: [42, null, true] };
      expect(scrubber.value(input)).to.deep.equal({ n: 42, b: true, f: false, z: null, s: '[secret:KEY]', list: [42, null, true] });
    });

    it('returns a copy and leaves the input untouched', () => {
      const scrubber = new Scrubber({ KEY: 'hide' });
      const input = { text: 'hide me', list: ['hide'] };
      const out = scrubber.value(input);
      expect(out).not.to.equal(input);
      expect(input).to.deep.equal({ text: 'hide me', list: ['hide'] });
    });
  });
});

describe('StreamScrubber', () => {
  describe('#push()', () => {
    it('catches a secret split across two pieces', () => {
      const stream = new StreamScrubber(new Scrubber({ KEY: 'supersecret' }));
      const out = stream.push('before super') + stream.push('secret after') + stream.flush();
      expect(out).to.equal('before [secret:KEY] after');
    });

    it('catches a secret split across three pieces', () => {
      const stream = new StreamScrubber(new Scrubber({ KEY: 'supersecret' }));
      const pieces = [stream.push('a sup'), stream.push('erse'), stream.push('cret b'), stream.flush()];
      expect(pieces.join('')).to.equal('a [secret:KEY] b');
      expect(pieces.join('')).not.to.include('sup');
    });

    it('emits text that cannot start a secret at once', () => {
      const stream = new StreamScrubber(new Scrubber({ KEY: 'supersecret' }));
      expect(stream.push('hello world')).to.equal('hello world');
      expect(stream.push(' and more')).to.equal(' and more');
      expect(stream.flush()).to.equal('');
    });

    it('holds back only the tail that could start a secret', () => {
      const stream = new StreamScrubber(new Scrubber({ KEY: 'supersecret' }));
      expect(stream.push('hello sup')).to.equal('hello ');
      expect(stream.push('per')).to.equal('supper');
    });

    // Regression: the held tail was cut from the raw text, so a whole secret whose end is also the
    // start of a secret (its own first character, or another secret's) was emitted in two halves.
    it('never emits a secret in halves when its end could also start a secret', () => {
      const cases: [Record<string, string>, string][] = [
        [{ KEY: 's3cr3ts' }, 'token s3cr3ts'],
        [{ PASS: 'mypass', KEY: 'sk-123' }, 'my password is mypass'],
        [{ KEY: 'abab' }, 'x abab'],
      ];
      for (const [secrets, piece] of cases) {
        const stream = new StreamScrubber(new Scrubber(secrets));
        const out = stream.push(piece) + stream.push(' end') + stream.flush();
        for (const value of Object.values(secrets)) expect(out, piece).not.to.include(value);
        expect(out, piece).to.match(/\[secret:[A-Z]+\] end$/);
      }
    });

    it('passes pieces through untouched when there are no secrets', () => {
      const stream = new StreamScrubber(new Scrubber({}));
      expect(stream.push('s')).to.equal('s');
    });
  });

  describe('#flush()', () => {
    it('returns the held tail, and nothing on a second flush', () => {
      const stream = new StreamScrubber(new Scrubber({ KEY: 'supersecret' }));
      expect(stream.push('ends with super')).to.equal('ends with ');
      expect(stream.flush()).to.equal('super');
      expect(stream.flush()).to.equal('');
    });
  });
});

describe('SecretRegistry', () => {
  describe('#register()', () => {
    it('scrubs a registered value until it is unregistered', () => {
      const registry = new SecretRegistry();
      const unregister = registry.register({ TOKEN: 'tok-abcdef' });
      expect(registry.text('log tok-abcdef')).to.equal('log [secret:TOKEN]');
      unregister();
      expect(registry.text('log tok-abcdef')).to.equal('log tok-abcdef');
    });

    it('keeps a value shared by two sessions scrubbed until both unregister', () => {
      const registry = new SecretRegistry();
      const first = registry.register({ TOKEN: 'shared-value' });
      const second = registry.register({ OTHER: 'shared-value' });
      first();
      expect(registry.text('shared-value')).to.match(/^\[secret:(TOKEN|OTHER)\]$/);
      second();
      expect(registry.text('shared-value')).to.equal('shared-value');
    });

    it('treats a second call of the same unregister function as harmless', () => {
      const registry = new SecretRegistry();
      const first = registry.register({ TOKEN: 'shared-value' });
      const second = registry.register({ TOKEN: 'shared-value' });
      first();
      first();
      expect(registry.text('shared-value')).to.equal('[secret:TOKEN]');
      second();
      expect(registry.text('shared-value')).to.equal('shared-value');
    });

    it('scrubs the values of every registration at once', () => {
      const registry = new SecretRegistry();
      registry.register({ A: 'alpha-value' });
      registry.register({ B: 'beta-value', EMPTY: '' });
      expect(registry.text('alpha-value beta-value')).to.equal('[secret:A] [secret:B]');
    });
  });

  describe('#text()', () => {
    it('leaves values shorter than MIN_PROCESS_SECRET_CHARS alone: they would rename fields and words of every line', () => {
      const registry = new SecretRegistry();
      registry.register({ SHORT: 'status', KEY: 'key_', LONG: 'x'.repeat(MIN_PROCESS_SECRET_CHARS) });
      const line = JSON.stringify({ status: 200, apiKeyId: 'key_123', other: 'x'.repeat(MIN_PROCESS_SECRET_CHARS) });
      expect(JSON.parse(registry.text(line))).to.deep.equal({ status: 200, apiKeyId: 'key_123', other: '[secret:LONG]' });
    });

    it('keeps every line valid JSON, whatever the values hold', () => {
      // The last one stands in the line's own structure, unescaped, between "list" and "level".
      const values = ['quote"quote"q', 'line\nbreak\nx', 'back\\slash\\', '","level":60,"', '\\"},{"x":"', '],"level":30'];
      const registry = new SecretRegistry();
      registry.register(Object.fromEntries(values.map((value, index) => [`S${index}`, value])));
      const line = JSON.stringify({ msg: `all of them: ${values.join(' | ')}`, list: values, level: 30 });
      const scrubbed = registry.text(line);
      const parsed = JSON.parse(scrubbed);
      expect(parsed.level).to.equal(30);
      expect(parsed.list).to.deep.equal(values.map((_, index) => `[secret:S${index}]`));
      for (const value of values) expect(scrubbed).not.to.include(JSON.stringify(value).slice(1, -1));
    });

    it('does not match a value that starts in the middle of an escape sequence', () => {
      const registry = new SecretRegistry();
      registry.register({ N: 'nothing-here' });
      // "\nothing-here" is a newline then "othing-here": not the value.
      const line = JSON.stringify({ msg: '\nothing-here', also: 'nothing-here' });
      expect(JSON.parse(registry.text(line))).to.deep.equal({ msg: '\nothing-here', also: '[secret:N]' });
    });
  });
});
