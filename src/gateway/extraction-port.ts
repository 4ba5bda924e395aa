/**
 * The gateway's view of the model-extraction monitor (src/gateway/extraction/, built separately): the gateway
 * depends on this shape only, so any monitor with an `observe` of this signature plugs in.
 */
export interface ExtractionObservation {
  readonly principal: string;
  /** The caller's network: the /24 of an IPv4 address or the /48 of an IPv6 address. */
  readonly network: string;
  readonly organisation: string;
  /** Epoch ms. */
  readonly at: number;
  readonly features?: number[];
  readonly text?: string;
  readonly outputLabel?: string;
}

export interface ExtractionVerdict {
  readonly detector: string;
  readonly score: number;
  readonly reason: string;
}

export const EXTRACTION_ACTIONS = ['none', 'alert', 'throttle', 'step-up', 'block'] as const;
export type ExtractionAction = (typeof EXTRACTION_ACTIONS)[number];

export interface ExtractionResult {
  readonly verdicts: readonly ExtractionVerdict[];
  readonly action: ExtractionAction;
}

export interface ExtractionObserver {
  observe(request: ExtractionObservation): ExtractionResult;
}

/** Groups callers by network so that one actor spreading queries over many addresses of a block is seen as one. */
export function networkOf(ip: string): string {
  const v4 = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.\d{1,3}$/i.exec(ip);
  if (v4 !== null) return `${v4[1]}.${v4[2]}.${v4[3]}.0/24`;
  if (ip.includes(':')) {
    const [head = ''] = ip.split('::');
    const groups = head.split(':').filter((g) => g !== '');
    while (groups.length < 3) groups.push('0');
    return `${groups.slice(0, 3).join(':').toLowerCase()}::/48`;
  }
  return ip;
}
