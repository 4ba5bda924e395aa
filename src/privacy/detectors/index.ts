import type { Detector } from '../types.ts';
import { creditCardDetector } from './credit-card.ts';
import { bitcoinDetector, ethereumDetector } from './crypto-address.ts';
import { emailDetector } from './email.ts';
import { ibanDetector } from './iban.ts';
import { aadhaarDetector, panDetector } from './india.ts';
import { ipv4Detector, ipv6Detector } from './ip.ts';
import { phoneDetector, type PhoneDetectorOptions } from './phone.ts';
import { privateKeyDetector } from './private-key.ts';
import { apiKeyDetector, highEntropyDetector, jwtDetector, secretAssignmentDetector } from './secrets.ts';
import { spelledCardDetector, spelledSsnDetector } from './spelled.ts';
import { nhsDetector, ninoDetector } from './uk.ts';
import { usSsnDetector } from './us-ssn.ts';

export type DefaultDetectorOptions = PhoneDetectorOptions;

/**
 * Every built-in detector. The order is the last tie-break of overlap resolution: specific, checksummed
 * detectors first, the generic entropy heuristic last.
 */
export function defaultDetectors(options: DefaultDetectorOptions = {}): Detector[] {
  return [
    privateKeyDetector(),
    apiKeyDetector(),
    jwtDetector(),
    creditCardDetector(),
    spelledCardDetector(),
    ibanDetector(),
    bitcoinDetector(),
    ethereumDetector(),
    aadhaarDetector(),
    nhsDetector(),
    usSsnDetector(),
    spelledSsnDetector(),
    ninoDetector(),
    panDetector(),
    emailDetector(),
    phoneDetector(options),
    ipv6Detector(),
    ipv4Detector(),
    secretAssignmentDetector(),
    highEntropyDetector(),
  ];
}
