import type { ProjectConfig, SamplingPolicyRule, ToolPolicyRule } from '../../config.js';
import { globMatch } from '../tools/namePatterns.js';
import type { ToolInfo } from '../tools/toolRouter.js';

/** What the gate decided for one call, and why. */
export interface PolicyDecision {
  decision: 'allow' | 'ask' | 'deny';
  /** The rule's reason, or how the decision was reached when no rule matched. */
  reason?: string;
  /** The rule that decided, if one did. */
  rule?: ToolPolicyRule;
}

/**
 * Decides whether a call runs, waits for a person, or never runs (API.md section 7): among the
 * rules that match server and tool, deny wins over ask over allow; with none, a trusted readOnlyHint
 * allows; else the task's autoExecute decides.
 */
export function decide(project: ProjectConfig, tool: Pick<ToolInfo, 'server' | 'tool' | 'annotations'>, autoExecute: boolean): PolicyDecision {
  const matching = (project.toolPolicies ?? []).filter((rule) => (rule.server === undefined || globMatch(rule.server, tool.server)) && globMatch(rule.tool, tool.tool));
  const ruled = strongest(matching);
  if (ruled) return ruled;
  if (project.trustAnnotations && tool.annotations?.readOnlyHint === true) return { decision: 'allow', reason: 'read-only tool (trusted annotation)' };
  return byAutoExecute(autoExecute);
}

/**
 * Decides whether a server's sampling request is answered by the task's model: among the
 * project's `samplingPolicies` that match the server, deny wins over ask over allow; with none,
 * the task's autoExecute decides, as for tool calls.
 */
export function decideSampling(project: ProjectConfig, server: string, autoExecute: boolean): SamplingDecision {
  const matching = (project.samplingPolicies ?? []).filter((rule) => rule.server === undefined || globMatch(rule.server, server));
  return strongest(matching) ?? byAutoExecute(autoExecute);
}

/** What the gate decided for one sampling request, and why. */
export interface SamplingDecision {
  decision: 'allow' | 'ask' | 'deny';
  reason?: string;
  rule?: SamplingPolicyRule;
}

function strongest<R extends { decision: 'allow' | 'ask' | 'deny'; reason?: string }>(matching: R[]): { decision: R['decision']; rule: R; reason?: string } | undefined {
  for (const decision of ['deny', 'ask', 'allow'] as const) {
    const rule = matching.find((r) => r.decision === decision);
    if (rule) return { decision, rule, ...(rule.reason ? { reason: rule.reason } : {}) };
  }
  return undefined;
}

function byAutoExecute(autoExecute: boolean): { decision: 'allow' | 'ask'; reason: string } {
  return autoExecute ? { decision: 'allow', reason: 'autoExecute' } : { decision: 'ask', reason: 'autoExecute is false' };
}
