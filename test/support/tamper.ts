/**
 * `text` with the character `fromEnd` places from its end (1: the last) replaced by a different base64url
 * character. Always a change: a fixed replacement ("…x", "…AA") leaves the text as it was whenever it already
 * ended that way, and a test expecting a refusal then fails at random. In base64url only the last character can
 * carry unused bits, so for encoded bytes use `fromEnd` ≥ 2 to be sure the decoded bytes change too.
 */
export function alterChar(text: string, fromEnd: number): string {
  const at = text.length - fromEnd;
  if (fromEnd < 1 || at < 0) throw new RangeError('no such character');
  const replacement = text[at] === 'A' ? 'B' : 'A';
  return `${text.slice(0, at)}${replacement}${text.slice(at + 1)}`;
}
