import { expect } from 'chai';
import type { McpServerConfig } from '../../src/config.js';
import { resolveTemplates, templateKeys } from '../../src/mcp/templates.js';
import type { ResolvedServer } from '../../src/mcp/templates.js';

/** The resolved server, failing the test when resolution reported missing keys. */
function resolved(config: McpServerConfig, variables: Record<string, string>): ResolvedServer {
  const resolution = resolveTemplates(config, variables);
  if (!resolution.ok) throw new Error(`expected every key to resolve, missing ${resolution.missingKeys.join(', ')}`);
  return resolution.server;
}

describe('templates', () => {
  describe('#resolveTemplates()', () => {
    describe('in url', () => {
      it('replaces {{mcp.KEY}} with the value', () => {
        const { config } = resolved({ type: 'http', url: 'https://api.example.com/{{mcp.TENANT}}/mcp' }, { TENANT: 'acme' });
        expect(config.url).to.equal('https://api.example.com/acme/mcp');
      });

      it('allows whitespace inside the braces', () => {
        const { config } = resolved({ type: 'http', url: 'https://h/{{ mcp.A }}/{{  mcp.B}}/{{mcp.C\t}}' }, { A: 'a', B: 'b', C: 'c' });
        expect(config.url).to.equal('https://h/a/b/c');
      });

      it('URL-encodes spaces, &, /, = and ? so a value cannot change the URL\'s structure', () => {
        const { config } = resolved({ type: 'http', url: 'https://h/mcp?token={{mcp.TOKEN}}&x=1' }, { TOKEN: 'a b&c/d=e?f' });
        expect(config.url).to.equal('https://h/mcp?token=a%20b%26c%2Fd%3De%3Ff&x=1');
        const url = new URL(config.url!);
        expect(url.searchParams.get('token')).to.equal('a b&c/d=e?f');
        expect(url.searchParams.get('x')).to.equal('1');
        expect([...url.searchParams.keys()]).to.deep.equal(['token', 'x']);
      });

      it('URL-encodes unicode as UTF-8 percent escapes', () => {
        const { config } = resolved({ type: 'http', url: 'https://h/{{mcp.CITY}}/mcp' }, { CITY: 'São Paulo ☃' });
        expect(config.url).to.equal('https://h/S%C3%A3o%20Paulo%20%E2%98%83/mcp');
        expect(decodeURIComponent(new URL(config.url!).pathname.split('/')[1]!)).to.equal('São Paulo ☃');
      });

      it('resolves a url that is a template as a whole', () => {
        const { config } = resolved({ type: 'http', url: '{{mcp.URL}}' }, { URL: 'plain' });
        expect(config.url).to.equal('plain');
      });
    });

    describe('in headers, env and args', () => {
      it('replaces templates in header values without encoding them', () => {
        const { config } = resolved(
          { type: 'http', url: 'https://h/mcp', headers: { Authorization: 'Bearer {{mcp.TOKEN}}', 'X-Tenant': '{{ mcp.TENANT }}' } },
          { TOKEN: 'a b&c/d=é', TENANT: 'acme corp' },
        );
        expect(config.headers).to.deep.equal({ Authorization: 'Bearer a b&c/d=é', 'X-Tenant': 'acme corp' });
      });

      it('replaces templates in env values and args without encoding them', () => {
        const { config } = resolved(
          { type: 'stdio', command: 'server', args: ['--token', '{{mcp.TOKEN}}', '--dir={{ mcp.DIR }}'], env: { API_KEY: '{{mcp.TOKEN}}', MODE: 'fixed' } },
          { TOKEN: 'a b&c', DIR: '/tmp/my dir' },
        );
        expect(config.args).to.deep.equal(['--token', 'a b&c', '--dir=/tmp/my dir']);
        expect(config.env).to.deep.equal({ API_KEY: 'a b&c', MODE: 'fixed' });
      });

      it('replaces several templates in one string, and the same key more than once', () => {
        const { config } = resolved({ type: 'stdio', command: 'x', args: ['{{mcp.A}}-{{mcp.B}}-{{mcp.A}}'] }, { A: '1', B: '2' });
        expect(config.args).to.deep.equal(['1-2-1']);
      });

      it('inserts values literally, even when they look like replacement patterns ($&, $1, $$)', () => {
        const { config } = resolved({ type: 'stdio', command: 'x', args: ['{{mcp.V}}'], env: { V: '<{{mcp.V}}>' } }, { V: '$& $1 $$ $`' });
        expect(config.args).to.deep.equal(['$& $1 $$ $`']);
        expect(config.env).to.deep.equal({ V: '<$& $1 $$ $`>' });
      });

      it('does not resolve templates again inside a value', () => {
        const { config } = resolved({ type: 'stdio', command: 'x', args: ['{{mcp.A}}'] }, { A: '{{mcp.B}}', B: 'secret' });
        expect(config.args).to.deep.equal(['{{mcp.B}}']);
      });

      it('accepts an empty value', () => {
        const { config, used } = resolved({ type: 'http', url: 'https://h/mcp?k={{mcp.EMPTY}}' }, { EMPTY: '' });
        expect(config.url).to.equal('https://h/mcp?k=');
        expect(used).to.deep.equal({ EMPTY: '' });
      });
    });

    describe('missing keys', () => {
      it('reports ok:false with every missing key, sorted and deduplicated, across all fields', () => {
        const resolution = resolveTemplates(
          {
            type: 'stdio',
            command: 'x',
            url: 'https://h/{{mcp.ZULU}}',
            headers: { A: '{{mcp.BRAVO}}', B: '{{mcp.ZULU}}' },
            env: { E: '{{mcp.ALPHA}} {{mcp.PRESENT}}' },
            args: ['{{mcp.BRAVO}}', '{{ mcp.CHARLIE }}'],
          },
          { PRESENT: 'here' },
        );
        expect(resolution).to.deep.equal({ ok: false, missingKeys: ['ALPHA', 'BRAVO', 'CHARLIE', 'ZULU'] });
      });

      it('never carries a value of a present key in the failure', () => {
        const resolution = resolveTemplates({ type: 'http', url: 'https://h/{{mcp.PRESENT}}/{{mcp.MISSING}}' }, { PRESENT: 's3cr3t-value' });
        expect(resolution.ok).to.equal(false);
        expect(JSON.stringify(resolution)).not.to.include('s3cr3t-value');
      });

      it('treats a key as case-sensitive', () => {
        const resolution = resolveTemplates({ type: 'http', url: 'https://h/{{mcp.token}}' }, { TOKEN: 'x' });
        expect(resolution).to.deep.equal({ ok: false, missingKeys: ['token'] });
      });

      it('does not take a key from the object prototype', () => {
        const resolution = resolveTemplates({ type: 'http', url: 'https://h/{{mcp.toString}}/{{mcp.constructor}}' }, {});
        expect(resolution).to.deep.equal({ ok: false, missingKeys: ['constructor', 'toString'] });
      });
    });

    describe('used', () => {
      it('holds exactly the keys the config used, with their values', () => {
        const { used } = resolved(
          { type: 'http', url: 'https://h/{{mcp.A}}', headers: { H: '{{mcp.B}}' } },
          { A: 'a value', B: 'b value', UNUSED: 'never', PATH: '/usr/bin' },
        );
        expect(used).to.deep.equal({ A: 'a value', B: 'b value' });
      });

      it('holds the raw value, not the URL-encoded one', () => {
        const { used } = resolved({ type: 'http', url: 'https://h/{{mcp.A}}' }, { A: 'a b&c' });
        expect(used).to.deep.equal({ A: 'a b&c' });
      });

      it('is empty when the config has no templates', () => {
        expect(resolved({ type: 'http', url: 'https://h/mcp' }, { A: 'x' }).used).to.deep.equal({});
      });
    });

    describe('what it leaves alone', () => {
      it('returns a config without templates unchanged', () => {
        const config: McpServerConfig = {
          type: 'http', url: 'https://h/mcp?a=1&b=%20', headers: { Authorization: 'Bearer fixed' }, timeout: 5000, toolTimeout: 9000,
          required: true, enabled: true, protocol: 'auto', includeTools: ['a*'], excludeTools: ['b'],
        };
        expect(resolved(config, { A: 'x' }).config).to.deep.equal(config);
      });

      it('keeps fields that are not templated (command, cwd, tool filters, timeouts) as they are', () => {
        const { config } = resolved(
          { type: 'stdio', command: '/bin/server', cwd: 'sub', args: ['{{mcp.A}}'], timeout: 100, includeTools: ['x*'], required: false },
          { A: '1' },
        );
        expect(config).to.deep.equal({ type: 'stdio', command: '/bin/server', cwd: 'sub', args: ['1'], timeout: 100, includeTools: ['x*'], required: false });
      });

      it('does not add fields the config did not have', () => {
        const { config } = resolved({ type: 'http', url: 'https://h/{{mcp.A}}' }, { A: '1' });
        expect(config).to.have.all.keys('type', 'url');
      });

      it('leaves other {{…}} text that is not an mcp template alone', () => {
        const text = '{{env.A}} {{mcp}} {{mcp.}} {{mcp.1A}} {{MCP.A}} {mcp.A} {{ mcp.A-B }} {{mcp.A.B}} {{secret.A}}';
        const { config, used } = resolved({ type: 'stdio', command: 'x', args: [text], headers: { H: text } }, { A: 'value', B: 'b' });
        expect(config.args).to.deep.equal([text]);
        expect(config.headers).to.deep.equal({ H: text });
        expect(used).to.deep.equal({});
      });

      it('does not mutate the input config', () => {
        const config: McpServerConfig = {
          type: 'stdio', command: 'x', url: 'https://h/{{mcp.A}}', headers: { H: '{{mcp.A}}' }, env: { E: '{{mcp.A}}' }, args: ['{{mcp.A}}'],
        };
        const copy = structuredClone(config);
        const { config: out } = resolved(config, { A: 'value' });
        expect(config).to.deep.equal(copy);
        expect(out.headers).not.to.equal(config.headers);
        expect(out.env).not.to.equal(config.env);
        expect(out.args).not.to.equal(config.args);
      });

      it('does not mutate the input config when keys are missing', () => {
        const config: McpServerConfig = { type: 'http', url: 'https://h/{{mcp.A}}', headers: { H: '{{mcp.B}}' } };
        const copy = structuredClone(config);
        resolveTemplates(config, { A: 'x' });
        expect(config).to.deep.equal(copy);
      });
    });
  });

  describe('#templateKeys()', () => {
    it('lists the keys of url, headers, env and args, sorted and deduplicated', () => {
      const keys = templateKeys({
        type: 'stdio', command: 'x', url: 'https://h/{{mcp.ZULU}}', headers: { A: '{{ mcp.BRAVO }}' }, env: { E: '{{mcp.ALPHA}}{{mcp.ZULU}}' }, args: ['{{mcp.BRAVO}}', '{{mcp.CHARLIE}}'],
      });
      expect(keys).to.deep.equal(['ALPHA', 'BRAVO', 'CHARLIE', 'ZULU']);
    });

    it('is empty for a config without templates', () => {
      expect(templateKeys({ type: 'http', url: 'https://h/mcp', headers: { A: '{{env.X}}' } })).to.deep.equal([]);
    });

    it('agrees with the keys resolveTemplates reports missing', () => {
      const config: McpServerConfig = { type: 'stdio', command: 'x', args: ['{{mcp.B}}', '{{mcp.A}}'], env: { C: '{{mcp.C}}' } };
      const resolution = resolveTemplates(config, {});
      expect(resolution.ok).to.equal(false);
      if (!resolution.ok) expect(resolution.missingKeys).to.deep.equal(templateKeys(config));
    });

    it('gives the same answer when called twice (no regex state carried over)', () => {
      const config: McpServerConfig = { type: 'http', url: 'https://h/{{mcp.A}}' };
      expect(templateKeys(config)).to.deep.equal(['A']);
      expect(templateKeys(config)).to.deep.equal(['A']);
    });
  });
});
