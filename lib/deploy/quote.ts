/**
 * Quoting of one value for each kind of file a snippet goes into.
 * Each function returns text that its consumer reads back as exactly `value`,
 * or throws RangeError for a value the format cannot carry.
 */

/** POSIX shell: single quotes, each `'` written as `'\''`. Carries any byte but NUL. */
export function quoteShell(value: string): string {
  refuse(value, /\0/, 'a shell word', 'a NUL byte');
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/**
 * systemd unit assignment such as `Environment="K=V"`: the whole assignment in
 * double quotes with `\` and `"` escaped and `%` doubled (specifiers expand even
 * inside quotes). Control characters cannot be carried.
 */
export function quoteSystemd(value: string): string {
  refuse(value, /[\x00-\x1f\x7f]/, 'a systemd unit', 'control characters');
  return `"${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('%', '%%')}"`;
}

/** Dockerfile ENV value: double quotes around escapeDockerfile(value). */
export function quoteDockerfile(value: string): string {
  return `"${escapeDockerfile(value)}"`;
}

/** Text for inside a double-quoted Dockerfile ENV value: `\`, `"` and `$` escaped with `\`; no newlines. */
export function escapeDockerfile(value: string): string {
  refuse(value, /[\r\n\0]/, 'a Dockerfile ENV value', 'newlines');
  return value.replace(/[\\"$]/g, '\\$&');
}

/** YAML double-quoted scalar (JSON strings are valid YAML); `$` doubled when the file interpolates (compose). */
export function quoteYaml(value: string, options: { interpolates?: boolean } = {}): string {
  const quoted = JSON.stringify(value).replace(/[\u007f-\u009f\u2028\u2029]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return options.interpolates ? quoted.replaceAll('$', '$$$$') : quoted;
}

/**
 * A Kubernetes env value inside YAML: `$(NAME)` references expand there, so `$(`
 * is written `$$(`.
 */
export function quoteKubernetes(value: string): string {
  return quoteYaml(value.replaceAll('$(', '$$$$('));
}

/**
 * supervisord `environment=` value: double quotes with `\` and `"` escaped (it
 * splits with shlex), `%` doubled (it expands `%(name)s`); no control characters.
 */
export function quoteSupervisord(value: string): string {
  refuse(value, /[\x00-\x1f\x7f]/, 'a supervisord value', 'control characters');
  return `"${value.replace(/[\\"]/g, '\\$&').replaceAll('%', '%%')}"`;
}

/** JavaScript string literal (for pm2's ecosystem file). */
export function quoteJavaScript(value: string): string {
  return quoteYaml(value);
}

function refuse(value: string, forbidden: RegExp, where: string, what: string): void {
  if (typeof value !== 'string') throw new TypeError(`the value to quote must be a string, got ${typeof value}`);
  if (forbidden.test(value)) throw new RangeError(`${JSON.stringify(value)} cannot be written into ${where}: it contains ${what}`);
}
