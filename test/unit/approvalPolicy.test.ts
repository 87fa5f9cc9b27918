import { expect } from 'chai';
import type { ProjectConfig, ToolPolicyRule } from '../../src/config.js';
import { decide, decideSampling } from '../../src/runtime/approvals/approvalPolicy.js';
import { globMatch } from '../../src/runtime/tools/namePatterns.js';
import type { ToolInfo } from '../../src/runtime/tools/toolRouter.js';

type Tool = Pick<ToolInfo, 'server' | 'tool' | 'annotations'>;

const tool = (server: string, name: string, readOnlyHint?: boolean): Tool => ({ server, tool: name, ...(readOnlyHint === undefined ? {} : { annotations: { readOnlyHint } }) });
const project = (toolPolicies?: ToolPolicyRule[], trustAnnotations?: boolean): ProjectConfig => ({
  ...(toolPolicies ? { toolPolicies } : {}),
  ...(trustAnnotations === undefined ? {} : { trustAnnotations }),
});

describe('approvalPolicy.decide', () => {
  describe('the matrix: rule × autoExecute × readOnlyHint × trustAnnotations', () => {
    const rules = [undefined, 'deny', 'ask', 'allow'] as const;
    for (const rule of rules) {
      for (const autoExecute of [true, false]) {
        for (const readOnlyHint of [undefined, false, true]) {
          for (const trustAnnotations of [undefined, false, true]) {
            // A matching rule always decides; with none, a trusted readOnlyHint allows, else autoExecute.
            const expected = rule ?? (trustAnnotations === true && readOnlyHint === true ? 'allow' : autoExecute ? 'allow' : 'ask');
            const name = `rule ${rule ?? 'none'}, autoExecute ${autoExecute}, readOnlyHint ${readOnlyHint ?? 'absent'}, trustAnnotations ${trustAnnotations ?? 'absent'} → ${expected}`;
            it(name, () => {
              const policies = rule ? [{ server: 'fs', tool: 'write_*', decision: rule }] : undefined;
              const verdict = decide(project(policies, trustAnnotations), tool('fs', 'write_file', readOnlyHint), autoExecute);
              expect(verdict.decision).to.equal(expected);
              if (rule) expect(verdict.rule).to.deep.equal({ server: 'fs', tool: 'write_*', decision: rule });
              else expect(verdict.rule).to.equal(undefined);
            });
          }
        }
      }
    }
  });

  describe('reasons', () => {
    it('carries the deciding rule\'s reason', () => {
      const verdict = decide(project([{ tool: 'rm', decision: 'deny', reason: 'never delete' }]), tool('fs', 'rm'), true);
      expect(verdict).to.deep.equal({ decision: 'deny', rule: { tool: 'rm', decision: 'deny', reason: 'never delete' }, reason: 'never delete' });
    });

    it('carries the reason of whichever rule wins, not of the others', () => {
      const verdict = decide(project([
        { tool: '*', decision: 'allow', reason: 'allowed' },
        { tool: 'rm', decision: 'ask', reason: 'ask first' },
      ]), tool('fs', 'rm'), true);
      expect(verdict.decision).to.equal('ask');
      expect(verdict.reason).to.equal('ask first');
    });

    it('has no reason key when the deciding rule gives none', () => {
      const verdict = decide(project([{ tool: 'rm', decision: 'ask' }]), tool('fs', 'rm'), true);
      expect(verdict).to.deep.equal({ decision: 'ask', rule: { tool: 'rm', decision: 'ask' } });
      expect(verdict).not.to.have.property('reason');
    });

    it('explains decisions reached without a rule', () => {
      expect(decide(project(), tool('fs', 'x'), true).reason).to.equal('autoExecute');
      expect(decide(project(), tool('fs', 'x'), false).reason).to.equal('autoExecute is false');
      expect(decide(project(undefined, true), tool('fs', 'x', true), false).reason).to.match(/read-only/);
    });
  });

  describe('precedence deny > ask > allow among matching rules, whatever their order', () => {
    const permutations = <T>(items: T[]): T[][] => (items.length <= 1 ? [items] : items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest])));
    const all: ToolPolicyRule[] = [
      { server: 'fs', tool: '*', decision: 'allow', reason: 'a' },
      { tool: 'write_file', decision: 'ask', reason: 'b' },
      { server: '*', tool: 'write_*', decision: 'deny', reason: 'c' },
    ];
    for (const order of permutations(all)) {
      it(`${order.map((r) => r.decision).join(', ')} → deny`, () => {
        const verdict = decide(project(order), tool('fs', 'write_file'), true);
        expect(verdict).to.include({ decision: 'deny', reason: 'c' });
      });
    }
    for (const order of permutations(all.filter((r) => r.decision !== 'deny'))) {
      it(`${order.map((r) => r.decision).join(', ')} → ask (autoExecute true)`, () => {
        expect(decide(project(order), tool('fs', 'write_file'), true)).to.include({ decision: 'ask', reason: 'b' });
      });
    }
    it('allow alone wins over autoExecute false and over an untrusted readOnlyHint false', () => {
      expect(decide(project([all[0]!]), tool('fs', 'write_file', false), false)).to.include({ decision: 'allow', reason: 'a' });
    });
    it('deny wins over a trusted readOnlyHint', () => {
      expect(decide(project([{ tool: 'read', decision: 'deny' }], true), tool('fs', 'read', true), true).decision).to.equal('deny');
    });
    it('ask wins over a trusted readOnlyHint', () => {
      expect(decide(project([{ tool: 'read', decision: 'ask' }], true), tool('fs', 'read', true), true).decision).to.equal('ask');
    });
    it('rules that do not match are ignored', () => {
      const policies: ToolPolicyRule[] = [{ tool: 'other', decision: 'deny' }, { server: 'web', tool: '*', decision: 'deny' }];
      expect(decide(project(policies), tool('fs', 'read'), true).decision).to.equal('allow');
      expect(decide(project(policies), tool('fs', 'read'), false).decision).to.equal('ask');
    });
  });

  describe('matching', () => {
    it('a rule without server matches every server', () => {
      const policies: ToolPolicyRule[] = [{ tool: 'search', decision: 'deny' }];
      for (const server of ['fs', 'web', 'workspace', 'a.b-c']) expect(decide(project(policies), tool(server, 'search'), true).decision, server).to.equal('deny');
    });

    it('server globs: exact, prefix, suffix, infix and *', () => {
      const cases: [string, string, boolean][] = [
        ['github', 'github', true], ['github', 'github2', false], ['github', 'my-github', false],
        ['git*', 'github', true], ['git*', 'git', true], ['git*', 'agit', false],
        ['*hub', 'github', true], ['*hub', 'hubs', false],
        ['g*b', 'github', true], ['g*b', 'gitlab', true], ['g*b', 'gitlab-x', false],
        ['*', 'anything', true], ['*', '', true],
      ];
      for (const [pattern, server, matches] of cases) {
        const verdict = decide(project([{ server: pattern, tool: '*', decision: 'deny' }]), tool(server, 't'), true);
        expect(verdict.decision, `${pattern} vs ${server}`).to.equal(matches ? 'deny' : 'allow');
      }
    });

    it('tool globs: exact, prefix, suffix and several stars', () => {
      const cases: [string, string, boolean][] = [
        ['delete_file', 'delete_file', true], ['delete_file', 'delete_files', false], ['delete_file', 'x_delete_file', false],
        ['delete_*', 'delete_repo', true], ['delete_*', 'undelete_repo', false],
        ['*_file', 'read_file', true], ['*_file', 'read_files', false],
        ['*delete*', 'bulk_delete_all', true], ['*delete*', 'remove', false],
        ['a*b*c', 'a-b-c', true], ['a*b*c', 'a-c-b', false],
      ];
      for (const [pattern, name, matches] of cases) {
        const verdict = decide(project([{ tool: pattern, decision: 'deny' }]), tool('fs', name), true);
        expect(verdict.decision, `${pattern} vs ${name}`).to.equal(matches ? 'deny' : 'allow');
      }
    });

    it('both server and tool must match', () => {
      const policies: ToolPolicyRule[] = [{ server: 'fs', tool: 'write_*', decision: 'deny' }];
      expect(decide(project(policies), tool('fs', 'write_file'), true).decision).to.equal('deny');
      expect(decide(project(policies), tool('web', 'write_file'), true).decision).to.equal('allow');
      expect(decide(project(policies), tool('fs', 'read_file'), true).decision).to.equal('allow');
    });

    it('matches the server\'s tool name, not the name the model sees', () => {
      const policies: ToolPolicyRule[] = [{ tool: 'echo', decision: 'deny' }];
      expect(decide(project(policies), tool('echo', 'echo'), true).decision).to.equal('deny');
      expect(decide(project([{ tool: 'echo__echo', decision: 'deny' }]), tool('echo', 'echo'), true).decision).to.equal('allow');
    });

    it('treats regex characters in patterns literally', () => {
      expect(globMatch('a.b', 'a.b')).to.equal(true);
      expect(globMatch('a.b', 'axb')).to.equal(false);
      expect(globMatch('a+', 'aa')).to.equal(false);
      expect(globMatch('(x)|y', 'y')).to.equal(false);
      expect(globMatch('(x)|y', '(x)|y')).to.equal(true);
      expect(globMatch('[ab]', 'a')).to.equal(false);
      expect(globMatch('a?', 'a')).to.equal(false);
      expect(globMatch('$^\\', '$^\\')).to.equal(true);
    });

    it('is case-sensitive', () => {
      expect(decide(project([{ tool: 'Delete', decision: 'deny' }]), tool('fs', 'delete'), true).decision).to.equal('allow');
    });
  });

  describe('no rules', () => {
    it('autoExecute false → ask, true → allow', () => {
      expect(decide({}, tool('fs', 'x'), false).decision).to.equal('ask');
      expect(decide({}, tool('fs', 'x'), true).decision).to.equal('allow');
      expect(decide(project([]), tool('fs', 'x'), false).decision).to.equal('ask');
    });

    it('a readOnlyHint is untrusted unless the project says so', () => {
      expect(decide({}, tool('fs', 'x', true), false).decision).to.equal('ask');
      expect(decide(project(undefined, false), tool('fs', 'x', true), false).decision).to.equal('ask');
      expect(decide(project(undefined, true), tool('fs', 'x', true), false).decision).to.equal('allow');
      expect(decide(project(undefined, true), tool('fs', 'x', false), false).decision).to.equal('ask');
      expect(decide(project(undefined, true), tool('fs', 'x'), false).decision).to.equal('ask');
    });

    it('only readOnlyHint counts, not other hints', () => {
      const destructive: Tool = { server: 'fs', tool: 'x', annotations: { destructiveHint: false, idempotentHint: true } };
      expect(decide(project(undefined, true), destructive, false).decision).to.equal('ask');
    });
  });
});

describe('approvalPolicy.decideSampling', () => {
  const policies = (samplingPolicies: ProjectConfig['samplingPolicies']): ProjectConfig => ({ samplingPolicies });

  it('with no rule, follows autoExecute', () => {
    expect(decideSampling({}, 'crm', true)).to.deep.equal({ decision: 'allow', reason: 'autoExecute' });
    expect(decideSampling({}, 'crm', false)).to.deep.equal({ decision: 'ask', reason: 'autoExecute is false' });
  });

  it('deny wins over ask over allow among matching rules, whatever their order; a rule beats autoExecute', () => {
    const rules = policies([{ decision: 'allow' }, { server: 'cr*', decision: 'ask', reason: 'check' }, { server: 'crm', decision: 'deny', reason: 'never' }]);
    expect(decideSampling(rules, 'crm', true)).to.deep.include({ decision: 'deny', reason: 'never' });
    expect(decideSampling(rules, 'crew', true)).to.deep.include({ decision: 'ask', reason: 'check' });
    expect(decideSampling(rules, 'docs', false)).to.deep.include({ decision: 'allow', rule: { decision: 'allow' } });
  });

  it('ignores tool policies, and tool policies ignore sampling policies', () => {
    const project: ProjectConfig = { toolPolicies: [{ tool: '*', decision: 'deny' }], samplingPolicies: [{ decision: 'allow' }] };
    expect(decideSampling(project, 'crm', false).decision).to.equal('allow');
    expect(decide(project, tool('crm', 'sampling/createMessage'), true).decision).to.equal('deny');
    expect(decide({ samplingPolicies: [{ decision: 'deny' }] }, tool('crm', 'x'), true).decision).to.equal('allow');
  });
});
