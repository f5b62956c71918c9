import { COMMA, LBRACE, LBRACKET, nameIs, notJson, QUOTE, RBRACE, RBRACKET, skipSpace, skipString, skipValue } from "./scan.ts";

/**
 * The source text of members of a JSON body, exactly as the producer wrote it: an event's `data` is
 * stored and delivered as these bytes, not as JSON.stringify of what JSON.parse made of them (which
 * rounds 12345678901234567890123, turns 1e400 into null, -0 into 0, 1.0 into 1, and rewrites escapes
 * and spacing). The text must already have passed JSON.parse; it remains the validator.
 *
 * A member's text runs from the first to the last character of its value: the white space around
 * the value is not part of it, the white space inside it is. A name given twice counts once, as its
 * last occurrence, as in JSON.parse; a name is matched after decoding (`"d\u0061ta"` is `data`).
 * One pass over the text, whatever the number of members asked for.
 */

/** The text of member `name` of the top-level object; undefined when there is no such member (or no object). */
export function rawMember(text: string, name: string): string | undefined {
  const start = skipSpace(text, 0);
  if (text.charCodeAt(start) !== LBRACE) return undefined;
  const found = memberOf(text, start, name);
  return found.value === undefined ? undefined : text.slice(found.value, found.valueEnd);
}

/**
 * For the array held by member `arrayName` of the top-level object, the text of member `name` of
 * each element, in order (undefined for an element without it, or not an object); undefined when
 * there is no such array. `rawArrayMembers(body, "events", "data")` gives each event's data.
 */
export function rawArrayMembers(text: string, arrayName: string, name: string): (string | undefined)[] | undefined {
  const start = skipSpace(text, 0);
  if (text.charCodeAt(start) !== LBRACE) return undefined;
  const array = memberOf(text, start, arrayName).value;
  if (array === undefined || text.charCodeAt(array) !== LBRACKET) return undefined;
  const members: (string | undefined)[] = [];
  let i = skipSpace(text, array + 1);
  if (text.charCodeAt(i) === RBRACKET) return members;
  for (;;) {
    if (text.charCodeAt(i) === LBRACE) {
      const found = memberOf(text, i, name);
      members.push(found.value === undefined ? undefined : text.slice(found.value, found.valueEnd));
      i = found.end;
    } else {
      members.push(undefined);
      i = skipValue(text, i);
    }
    i = skipSpace(text, i);
    if (text.charCodeAt(i) !== COMMA) return members; // the closing bracket
    i = skipSpace(text, i + 1);
  }
}

interface Found {
  /** Where the member's value starts and ends (undefined: no such member). */
  value: number | undefined;
  valueEnd: number;
  /** Just past the object's closing brace. */
  end: number;
}

/** Finds member `name` in the object whose `{` is at `start`: the last one so named, as JSON.parse keeps. */
function memberOf(text: string, start: number, name: string): Found {
  const found: Found = { value: undefined, valueEnd: 0, end: 0 };
  let i = skipSpace(text, start + 1);
  if (text.charCodeAt(i) === RBRACE) {
    found.end = i + 1;
    return found;
  }
  for (;;) {
    if (text.charCodeAt(i) !== QUOTE) throw notJson();
    const nameEnd = skipString(text, i);
    const matches = nameIs(text, i, nameEnd, name);
    const value = skipSpace(text, skipSpace(text, nameEnd) + 1); // past the colon
    const valueEnd = skipValue(text, value);
    if (matches) {
      found.value = value;
      found.valueEnd = valueEnd;
    }
    i = skipSpace(text, valueEnd);
    if (text.charCodeAt(i) !== COMMA) {
      found.end = i + 1; // the closing brace
      return found;
    }
    i = skipSpace(text, i + 1);
  }
}
