// Argument checks shared by the public functions: wrong types are TypeErrors,
// wrong values RangeErrors, each message naming the function and the argument.

/** A short description of a value for error messages, without dumping its contents. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return `an instance of ${value.constructor?.name ?? 'Object'}`;
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (typeof value === 'function') return 'a function';
  return `${typeof value} ${String(value)}`;
}

/**
 * Checks that `options` is undefined or a plain object whose keys are all in
 * `allowed`, so a misspelt option fails loudly instead of being ignored.
 */
export function checkOptions(operation: string, options: unknown, allowed: readonly string[]): void {
  if (options === undefined) return;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`${operation}: options must be an object (got ${describe(options)})`);
  }
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      throw new TypeError(`${operation}: unknown option ${JSON.stringify(key)} (known: ${allowed.join(', ')})`);
    }
  }
}

/** Checks an optional boolean. */
export function checkOptionalBoolean(operation: string, name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new TypeError(`${operation}: ${name} must be a boolean (got ${describe(value)})`);
  }
}

/** Checks that `value` is an integer in [min, max]; returns it typed. */
export function checkInteger(operation: string, name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number') {
    throw new TypeError(`${operation}: ${name} must be a number (got ${describe(value)})`);
  }
  if (!Number.isInteger(value)) {
    throw new RangeError(`${operation}: ${name} must be an integer (got ${value})`);
  }
  if (value < min || value > max) {
    throw new RangeError(`${operation}: ${name} must be between ${min} and ${max} (got ${value})`);
  }
  return value;
}

/** Checks a string that goes to the kernel as a C string: no NUL bytes. */
export function checkCString(operation: string, name: string, value: unknown, { allowEmpty = false } = {}): string {
  if (typeof value !== 'string') {
    throw new TypeError(`${operation}: ${name} must be a string (got ${describe(value)})`);
  }
  if (!allowEmpty && value.length === 0) {
    throw new RangeError(`${operation}: ${name} must not be empty`);
  }
  if (value.includes('\0')) {
    throw new RangeError(`${operation}: ${name} must not contain NUL bytes`);
  }
  return value;
}
