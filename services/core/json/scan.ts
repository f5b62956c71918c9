/**
 * Moving over JSON text without parsing it: for the few places that need the text itself (what a
 * producer sent, byte for byte), not the value JSON.parse makes of it.
 *
 * Every function here assumes the text already passed JSON.parse, which stays the validator: the
 * scanner checks no grammar, it only has to find where each token ends. That keeps it one cheap
 * pass of charCodeAt compares, with strings skipped by indexOf (native, and most of a payload's
 * bytes are usually inside strings).
 */

export const QUOTE = 34; // "
const BACKSLASH = 92; // \
export const COMMA = 44; // ,
export const LBRACE = 123; // {
export const RBRACE = 125; // }
export const LBRACKET = 91; // [
export const RBRACKET = 93; // ]

/** Index of the first character at or after `i` that is not JSON white space. */
export function skipSpace(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 10 && c !== 13 && c !== 9) return i;
    i++;
  }
}

/** Index just past the string whose opening quote is at `i`. */
export function skipString(text: string, i: number): number {
  for (let quote = text.indexOf('"', i + 1); quote >= 0; quote = text.indexOf('"', quote + 1)) {
    // A quote closes the string unless it is escaped, that is preceded by an odd number of
    // backslashes (`\\"` is an escaped backslash, then the closing quote).
    let k = quote - 1;
    while (text.charCodeAt(k) === BACKSLASH) k--;
    if ((quote - 1 - k) % 2 === 0) return quote + 1;
  }
  throw notJson();
}

/** Index just past the number or literal (true, false, null) starting at `i`. */
export function skipScalar(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i);
    // Digits, letters, `+ - .`: everything a number or a literal is made of, and no delimiter.
    if ((c >= 48 && c <= 57) || (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 43 || c === 45 || c === 46) i++;
    else return i;
  }
}

/** Index just past the value (of any kind) starting at `i`. */
export function skipValue(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === QUOTE) return skipString(text, i);
  if (c !== LBRACE && c !== LBRACKET) return skipScalar(text, i);
  // A container: count brackets until the one that closes it. Brackets inside strings do not
  // count, so strings are skipped whole; which kind of bracket closes is JSON.parse's business.
  let depth = 0;
  while (i < text.length) {
    const d = text.charCodeAt(i);
    if (d === QUOTE) {
      i = skipString(text, i);
      continue;
    }
    if (d === LBRACE || d === LBRACKET) depth++;
    else if ((d === RBRACE || d === RBRACKET) && --depth === 0) return i + 1;
    i++;
  }
  throw notJson();
}

/**
 * Whether the member name token `text[start, end)` (quotes included) names `name`. A name may be
 * written with escapes (`"d\u0061ta"` is `data`, as JSON.parse reads it); only such a name is
 * decoded, the rest are compared in place.
 */
export function nameIs(text: string, start: number, end: number, name: string): boolean {
  for (let i = start + 1; i < end - 1; i++) {
    if (text.charCodeAt(i) === BACKSLASH) return JSON.parse(text.slice(start, end)) === name;
  }
  return end - start - 2 === name.length && text.startsWith(name, start + 1);
}

/** A member name token decoded: as written, or through JSON.parse when it holds an escape. */
function decodeName(token: string): string {
  return token.includes("\\") ? (JSON.parse(token) as string) : token.slice(1, -1);
}

/**
 * The text with the white space between tokens removed (strings kept as they are): two texts of
 * the same JSON written with different spacing compare equal after it, and numbers stay as written.
 */
export function withoutSpace(text: string): string {
  const parts: string[] = [];
  let from = 0;
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) i = skipString(text, i);
    else if (c === 32 || c === 10 || c === 13 || c === 9) {
      parts.push(text.slice(from, i));
      from = i = skipSpace(text, i);
    } else i++;
  }
  parts.push(text.slice(from));
  return parts.join("");
}

export type TokenKind = "key" | "string" | "number";
/**
 * Looks at one token as written (a string or key with its quotes); returns a value to stop the walk
 * with, or undefined to go on. `path` leads to the token (for a key, it ends with that key decoded);
 * it is the walker's own array, valid only during the call.
 */
export type TokenVisitor<T> = (kind: TokenKind, token: string, path: readonly (string | number)[]) => T | undefined;

/**
 * Walks every key, string and number of the text in order, with its path, until `visit` returns
 * something. Unlike a walk of JSON.parse's value it sees tokens as written, and sees all of them:
 * the members a duplicate key shadows too, which are gone from the value but not from the text.
 * Recursive: callers bound the depth first (body.ts refuses deep bodies before walking them).
 */
export function findToken<T>(text: string, visit: TokenVisitor<T>): T | undefined {
  let found: T | undefined;
  const path: (string | number)[] = [];
  // Returns the index just past the value at `i`, or -1 once `visit` has found something.
  const walk = (i: number): number => {
    const c = text.charCodeAt(i);
    if (c === LBRACE || c === LBRACKET) {
      i = skipSpace(text, i + 1);
      if (text.charCodeAt(i) === (c === LBRACE ? RBRACE : RBRACKET)) return i + 1;
      for (let index = 0; ; index++) {
        if (c === LBRACE) {
          const end = skipString(text, i);
          const token = text.slice(i, end);
          path.push(decodeName(token));
          if ((found = visit("key", token, path)) !== undefined) return -1;
          i = skipSpace(text, skipSpace(text, end) + 1); // past the colon
        } else path.push(index);
        i = walk(i);
        if (i < 0) return -1;
        path.pop();
        i = skipSpace(text, i);
        if (text.charCodeAt(i) !== COMMA) return i + 1; // the closing bracket
        i = skipSpace(text, i + 1);
      }
    }
    if (c === QUOTE) {
      const end = skipString(text, i);
      return (found = visit("string", text.slice(i, end), path)) === undefined ? end : -1;
    }
    const end = skipScalar(text, i);
    if (c === 116 || c === 102 || c === 110) return end; // true, false, null
    return (found = visit("number", text.slice(i, end), path)) === undefined ? end : -1;
  };
  walk(skipSpace(text, 0));
  return found;
}

export function notJson(): Error {
  return new Error("not JSON: the scanner is only given text that JSON.parse accepted");
}
