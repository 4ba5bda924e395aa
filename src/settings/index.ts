/**
 * The check shared by Warden's configuration files (`warden server`'s `WARDEN_CONFIG` and its audit sinks,
 * `warden gateway --config`): every setting must be one the reader knows. A misspelt setting would
 * otherwise leave its default in place without a word (`databaseURL` and the server quietly stays on SQLite;
 * `outputPolcy` and the gateway filters with its default policy), and a security product fails closed.
 */

/** The sections of a file and the settings each may hold; `''` is the top level, `a.b` a section inside `a`. */
export type KnownSettings = Readonly<Record<string, readonly string[]>>;

/**
 * Why `raw` holds a setting `known` does not list (`unknown setting tls.certFil (known in this section: …)`), or
 * a section that is not an object; undefined when every setting is known. Sections absent from `raw` are fine.
 */
export function unknownSetting(raw: object, known: KnownSettings): string | undefined {
  for (const [section, names] of Object.entries(known)) {
    let value: unknown = raw;
    for (const part of section === '' ? [] : section.split('.')) {
      // A parent that is not an object is its own section's error, reported there.
      value =
        typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[part] : undefined;
    }
    if (value === undefined) continue;
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      return `${section} must be an object`;
    for (const name of Object.keys(value)) {
      if (!names.includes(name)) {
        const where = section === '' ? '' : `${section}.`;
        return `unknown setting ${where}${name} (known in this section: ${names.join(', ')})`;
      }
    }
  }
  return undefined;
}
