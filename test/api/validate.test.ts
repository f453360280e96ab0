import { describe, expect, it } from 'vitest';
import { checkCString, checkInteger, checkOptionalBoolean, checkOptions, describe as describeValue } from '../../lib/core/validate.js';

describe('validate', () => {
  it('describes values without dumping them', () => {
    expect(describeValue(null)).toBe('null');
    expect(describeValue([1])).toBe('an array');
    expect(describeValue(new Map())).toBe('an instance of Map');
    expect(describeValue(Object.create(null))).toBe('an instance of Object');
    expect(describeValue('x'.repeat(100))).toBe(`the string "${'x'.repeat(40)}…"`);
    expect(describeValue(() => 1)).toBe('a function');
    expect(describeValue(5n)).toBe('bigint 5');
    expect(describeValue(Symbol('s'))).toBe('symbol Symbol(s)');
  });

  it('checkOptions accepts undefined and known keys, refuses the rest', () => {
    expect(() => checkOptions('f', undefined, ['a'])).not.toThrow();
    expect(() => checkOptions('f', { a: 1 }, ['a'])).not.toThrow();
    expect(() => checkOptions('f', { b: 1 }, ['a'])).toThrow(new TypeError('f: unknown option "b" (known: a)'));
    expect(() => checkOptions('f', 'a', ['a'])).toThrow(new TypeError('f: options must be an object (got the string "a")'));
    expect(() => checkOptions('f', [], ['a'])).toThrow(TypeError);
  });

  it('checkOptionalBoolean', () => {
    expect(() => checkOptionalBoolean('f', 'x', undefined)).not.toThrow();
    expect(() => checkOptionalBoolean('f', 'x', false)).not.toThrow();
    expect(() => checkOptionalBoolean('f', 'x', 0)).toThrow(new TypeError('f: x must be a boolean (got number 0)'));
  });

  it('checkInteger: TypeError for non-numbers, RangeError for fractions and bounds', () => {
    expect(checkInteger('f', 'n', 3, 0, 5)).toBe(3);
    expect(() => checkInteger('f', 'n', '3', 0, 5)).toThrow(new TypeError('f: n must be a number (got the string "3")'));
    expect(() => checkInteger('f', 'n', 2.5, 0, 5)).toThrow(new RangeError('f: n must be an integer (got 2.5)'));
    expect(() => checkInteger('f', 'n', Number.POSITIVE_INFINITY, 0, 5)).toThrow(RangeError);
    expect(() => checkInteger('f', 'n', -1, 0, 5)).toThrow(new RangeError('f: n must be between 0 and 5 (got -1)'));
  });

  it('checkCString refuses NUL bytes and, unless allowed, emptiness', () => {
    expect(checkCString('f', 's', 'ok')).toBe('ok');
    expect(checkCString('f', 's', '', { allowEmpty: true })).toBe('');
    expect(() => checkCString('f', 's', '')).toThrow(new RangeError('f: s must not be empty'));
    expect(() => checkCString('f', 's', 'a\0b')).toThrow(new RangeError('f: s must not contain NUL bytes'));
    expect(() => checkCString('f', 's', 1)).toThrow(TypeError);
  });
});
