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
