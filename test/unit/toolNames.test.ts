import { expect } from 'chai';
import { TOOL_NAME_PATTERN, ToolNameTable } from '../../src/runtime/tools/toolNames.js';
import type { ToolAddress } from '../../src/runtime/tools/toolNames.js';

/** A small deterministic PRNG (mulberry32), so a failing random case can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Plain characters, the ones sanitising rewrites, the separator's own character, and astral unicode.
const ALPHABET = [...'abcXYZ019_-', '.', ' ', '/', ':', '@', 'é', 'ß', '中', '😀', '__'];

function randomText(next: () => number, maxLength: number): string {
  const length = Math.floor(next() * (maxLength + 1));
  let text = '';
  for (let i = 0; i < length; i++) text += ALPHABET[Math.floor(next() * ALPHABET.length)]!;
  return text;
}

describe('ToolNameTable', () => {
  describe('#add()', () => {
    it('names a server\'s tool <server>__<tool>', () => {
      const table = new ToolNameTable();
      expect(table.add({ server: 'github', tool: 'create_issue' })).to.equal('github__create_issue');
      expect(table.add({ server: 'my-server', tool: 'Search-2' })).to.equal('my-server__Search-2');
    });

    it('keeps plain names for built-in tools', () => {
      const table = new ToolNameTable();
      expect(table.add({ server: 'workspace', tool: 'read_file' }, { plain: true })).to.equal('read_file');
      expect(table.add({ server: 'workspace', tool: 'run_shell_command' }, { plain: true })).to.equal('run_shell_command');
    });

    it('returns the same name when the same tool is added again', () => {
      const table = new ToolNameTable();
      const first = table.add({ server: 's', tool: 't' });
      expect(table.add({ server: 's', tool: 't' })).to.equal(first);
    });

    describe('sanitising', () => {
      const cases: Array<[ToolAddress, string]> = [
        [{ server: 'files.v2', tool: 'read.file' }, 'files_v2__read_file'],
        [{ server: 'my server', tool: 'do thing' }, 'my_server__do_thing'],
        [{ server: 'org/repo', tool: 'a/b' }, 'org_repo__a_b'],
        [{ server: 'café', tool: 'naïve' }, 'caf___na_ve'],
        [{ server: 'weather', tool: 'forecast:today@home' }, 'weather__forecast_today_home'],
      ];
      // A name that had to be sanitised could collide with another tool's; it always carries the
      // stable hash, so its name never depends on which other tools a task happens to list.
      for (const [address, expected] of cases) {
        it(`turns ${JSON.stringify(address)} into ${expected} plus a stable hash`, () => {
          const name = new ToolNameTable().add(address);
          expect(name).to.match(new RegExp(`^${expected}_[0-9a-f]{8}$`));
          expect(name).to.match(TOOL_NAME_PATTERN);
          expect(new ToolNameTable().add(address)).to.equal(name);
        });
      }

      it('names a tool the same whichever colliding tool was listed first', () => {
        const a = { server: 'a.b', tool: 'c' };
        const b = { server: 'a_b', tool: 'c' };
        const one = new ToolNameTable();
        const two = new ToolNameTable();
        const oneNames = [one.add(a), one.add(b)];
        const twoNames = [two.add(b), two.add(a)].reverse();
        expect(oneNames).to.deep.equal(twoNames);
      });

      it('replaces unicode outside the BMP and keeps the name valid', () => {
        const name = new ToolNameTable().add({ server: 'emoji😀', tool: '中文' });
        expect(name).to.match(TOOL_NAME_PATTERN);
        expect(name.startsWith('emoji')).to.equal(true);
      });

      it('gives empty server and tool names a valid name', () => {
        const table = new ToolNameTable();
        const server = table.add({ server: '', tool: '' });
        const plain = table.add({ server: 'workspace', tool: '' }, { plain: true });
        expect(server).to.match(TOOL_NAME_PATTERN);
        expect(plain).to.match(TOOL_NAME_PATTERN);
        expect(server).not.to.equal(plain);
      });
    });

    describe('collisions', () => {
      it('gives two addresses that sanitise alike different names, one with a hash suffix, and each resolves to its own address', () => {
        const table = new ToolNameTable();
        const dotted = table.add({ server: 'a.b', tool: 'c' });
        const underscored = table.add({ server: 'a_b', tool: 'c' });
        expect(dotted).not.to.equal(underscored);
        for (const name of [dotted, underscored]) expect(name).to.match(/^a_b__c(_[0-9a-f]{8})?$/);
        expect([dotted, underscored].filter((name) => /_[0-9a-f]{8}$/.test(name))).to.have.length.at.least(1);
        expect(table.resolve(dotted)).to.deep.equal({ server: 'a.b', tool: 'c' });
        expect(table.resolve(underscored)).to.deep.equal({ server: 'a_b', tool: 'c' });
        expect(table.nameOf({ server: 'a.b', tool: 'c' })).to.equal(dotted);
        expect(table.nameOf({ server: 'a_b', tool: 'c' })).to.equal(underscored);
      });

      it('keeps many addresses that sanitise alike apart', () => {
        const table = new ToolNameTable();
        const addresses = ['a.b', 'a_b', 'a b', 'a/b', 'a:b', 'a@b', 'aéb'].map((server) => ({ server, tool: 'c' }));
        const names = addresses.map((address) => table.add(address));
        expect(new Set(names).size).to.equal(addresses.length);
        names.forEach((name, i) => {
          expect(name).to.match(TOOL_NAME_PATTERN);
          expect(table.resolve(name)).to.deep.equal(addresses[i]);
        });
      });

      it('keeps a built-in tool and a server tool apart when their names are alike', () => {
        const table = new ToolNameTable();
        const builtin = table.add({ server: 'workspace', tool: 'x__y' }, { plain: true });
        const other = table.add({ server: 'x', tool: 'y' });
        expect(builtin).not.to.equal(other);
        expect(table.resolve(builtin)).to.deep.equal({ server: 'workspace', tool: 'x__y' });
        expect(table.resolve(other)).to.deep.equal({ server: 'x', tool: 'y' });
      });
    });

    describe('long names', () => {
      it('cuts a name over 64 characters to at most 64 with a hash suffix', () => {
        const address = { server: 'a-very-long-server-name-for-testing', tool: 'and_an_even_longer_tool_name_that_goes_on_and_on' };
        const name = new ToolNameTable().add(address);
        expect(name.length).to.be.at.most(64);
        expect(name).to.match(TOOL_NAME_PATTERN);
        expect(name).to.match(/_[0-9a-f]{8}$/);
        expect(name.startsWith('a-very-long-server-name-for-testing__and_an')).to.equal(true);
      });

      it('keeps a name of exactly 64 characters as it is', () => {
        const tool = 'x'.repeat(64 - 'srv__'.length);
        expect(new ToolNameTable().add({ server: 'srv', tool })).to.equal(`srv__${tool}`);
      });

      it('gives two long names that share their first 64 characters different names', () => {
        const table = new ToolNameTable();
        const prefix = 'p'.repeat(80);
        const one = table.add({ server: 'srv', tool: `${prefix}_one` });
        const two = table.add({ server: 'srv', tool: `${prefix}_two` });
        expect(one).not.to.equal(two);
        expect(one.length).to.be.at.most(64);
        expect(two.length).to.be.at.most(64);
        expect(table.resolve(one)).to.deep.equal({ server: 'srv', tool: `${prefix}_one` });
        expect(table.resolve(two)).to.deep.equal({ server: 'srv', tool: `${prefix}_two` });
      });

      it('cuts a long plain name too', () => {
        const name = new ToolNameTable().add({ server: 'workspace', tool: 't'.repeat(100) }, { plain: true });
        expect(name.length).to.be.at.most(64);
        expect(name).to.match(TOOL_NAME_PATTERN);
      });
    });

    describe('stability across tasks', () => {
      it('gives the same address the same name in a new table', () => {
        const addresses: ToolAddress[] = [
          { server: 'github', tool: 'create_issue' },
          { server: 'files.v2', tool: 'read file' },
          { server: 'srv', tool: 'q'.repeat(90) },
        ];
        const first = new ToolNameTable();
        const second = new ToolNameTable();
        const names = addresses.map((address) => first.add(address));
        expect(addresses.map((address) => second.add(address))).to.deep.equal(names);
      });

      it('gives the same address the same long name whatever else the table holds', () => {
        const address = { server: 'srv', tool: 'q'.repeat(90) };
        const alone = new ToolNameTable().add(address);
        const crowded = new ToolNameTable();
        for (let i = 0; i < 20; i++) crowded.add({ server: 'srv', tool: `${'q'.repeat(90)}${i}` });
        expect(crowded.add(address)).to.equal(alone);
      });

      // Servers answer tools/list in whatever order they finish, so a session cannot rely on the
      // order of add(); a history that says `a_b__c` must mean the same tool in the next task.
      it('gives two colliding addresses the same names whichever is added first', () => {
        const dotted = { server: 'a.b', tool: 'c' };
        const underscored = { server: 'a_b', tool: 'c' };
        const forward = new ToolNameTable();
        const forwardNames = [forward.add(dotted), forward.add(underscored)];
        const backward = new ToolNameTable();
        const backwardNames = [backward.add(underscored), backward.add(dotted)].reverse();
        expect(backwardNames).to.deep.equal(forwardNames);
      });
    });

    it('produces only names matching TOOL_NAME_PATTERN, unique and resolvable, for many random addresses', () => {
      const next = random(20240611);
      const table = new ToolNameTable();
      const seen = new Map<string, string>();
      const added: Array<{ address: ToolAddress; plain: boolean; name: string }> = [];
      for (let i = 0; i < 2_000; i++) {
        // Short texts collide often after sanitising; long ones exercise the cut.
        const address = { server: randomText(next, next() < 0.8 ? 4 : 60), tool: randomText(next, next() < 0.8 ? 4 : 60) };
        const plain = next() < 0.1;
        const name = table.add(address, { plain });
        const key = JSON.stringify(address);
        expect(name, `name of ${key}`).to.match(TOOL_NAME_PATTERN);
        expect(table.resolve(name), `resolve(${name})`).to.deep.equal(address);
        if (seen.has(key)) expect(name, `second add of ${key}`).to.equal(seen.get(key));
        else added.push({ address, plain, name });
        seen.set(key, name);
      }
      const names = added.map((entry) => entry.name);
      expect(new Set(names).size, 'names are unique').to.equal(names.length);
      for (const { address, name } of added) {
        expect(table.resolve(name), `resolve(${name})`).to.deep.equal(address);
        expect(table.nameOf(address)).to.equal(name);
      }
      // The same adds in the same order give the same names in a new table.
      const replay = new ToolNameTable();
      for (const { address, plain, name } of added) expect(replay.add(address, { plain })).to.equal(name);
    });
  });

  describe('#resolve()', () => {
    it('returns undefined for a name the table did not produce', () => {
      const table = new ToolNameTable();
      table.add({ server: 's', tool: 't' });
      expect(table.resolve('s__unknown')).to.equal(undefined);
      expect(table.resolve('t')).to.equal(undefined);
    });

    it('resolves a plain built-in name to the built-in server', () => {
      const table = new ToolNameTable();
      const name = table.add({ server: 'workspace', tool: 'glob' }, { plain: true });
      expect(table.resolve(name)).to.deep.equal({ server: 'workspace', tool: 'glob' });
    });
  });

  describe('#nameOf()', () => {
    it('returns undefined for a tool not yet added', () => {
      expect(new ToolNameTable().nameOf({ server: 's', tool: 't' })).to.equal(undefined);
    });
  });
});
