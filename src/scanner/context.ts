import { RULES, type RuleId } from './rules.ts';
import type { ByteSource } from './source.ts';
import type { Finding, FormatName, ScanLimits } from './types.ts';

/** Findings and budgets shared by every object of one scan. */
export class ScanState {
  readonly findings: Finding[] = [];
  readonly limits: ScanLimits;
  /** Bytes produced by inflation so far, against `limits.maxInflatedTotal`. */
  inflated = 0;
  private readonly seen = new Set<string>();

  constructor(limits: ScanLimits) {
    this.limits = limits;
  }

  add(rule: RuleId, message: string, path: string, offset?: number): void {
    // One finding per rule, path and message: a global memoised once and used a thousand times is one finding.
    const key = `${rule}\u0000${path}\u0000${message}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    const f: Finding = { severity: RULES[rule].severity, rule, message, path };
    if (offset !== undefined) f.offset = offset;
    this.findings.push(f);
  }
}

/** Recursion into a contained object (archive entry, decompressed stream, nested pickle). */
export type ScanChild = (
  source: ByteSource,
  ctx: ScanContext,
  hint?: { inArchive?: boolean; entryName?: string },
) => Promise<FormatName>;

/** Where the scanner stands: the object under scan, its container path and depth. */
export class ScanContext {
  readonly state: ScanState;
  readonly path: string;
  readonly depth: number;
  readonly scanChild: ScanChild;

  constructor(state: ScanState, path: string, depth: number, scanChild: ScanChild) {
    this.state = state;
    this.path = path;
    this.depth = depth;
    this.scanChild = scanChild;
  }

  get limits(): ScanLimits {
    return this.state.limits;
  }

  add(rule: RuleId, message: string, offset?: number): void {
    this.state.add(rule, message, this.path, offset);
  }

  /** Context for a contained object named `name` (an entry path, or a marker such as `<gunzip>`). */
  child(name: string): ScanContext {
    return new ScanContext(
      this.state,
      this.path === '' ? name : `${this.path}!${name}`,
      this.depth + 1,
      this.scanChild,
    );
  }

  /** Scans a contained object, enforcing the depth cap. */
  async recurse(
    source: ByteSource,
    name: string,
    hint?: { inArchive?: boolean; entryName?: string },
  ): Promise<void> {
    const ctx = this.child(name);
    if (ctx.depth > this.limits.maxDepth) {
      ctx.add('archive.depth-limit', `nesting deeper than ${this.limits.maxDepth}; not scanned`);
      return;
    }
    await this.scanChild(source, ctx, hint);
  }
}
