/**
 * Event types and the patterns that select them, defined once for everything that reads them: the
 * API's validation, fan-out at ingest (matchingPatterns) and the list filters (patternMatch).
 *
 * A type is dot-separated segments of letters, digits, `_`, `:` or `-` (`order.paid`). A pattern is
 * a type (matches it exactly), a type followed by a whole `.*` segment (`order.*`: every type under
 * `order.`, at any depth) or `*` alone (every type). `*` is no wildcard anywhere else.
 */

const SEGMENT = "[A-Za-z0-9_:-]+";
export const EVENT_TYPE_REGEX = new RegExp(`^${SEGMENT}(\\.${SEGMENT})*$`);
export const EVENT_TYPE_PATTERN_REGEX = new RegExp(`^(\\*|${SEGMENT}(\\.${SEGMENT})*(\\.\\*)?)$`);
export const EVENT_TYPE_MAX_LENGTH = 200;

const ALL_EVENT_TYPES = "*";
const PREFIX_SUFFIX = ".*";

/**
 * The patterns that match `type`: itself, each `prefix.*` and `*`. Fan-out looks routes up by these,
 * so a route's pattern is compared by equality, which an index serves.
 */
export function matchingPatterns(type: string): string[] {
  const parts = type.split(".");
  const patterns = [type];
  for (let i = parts.length - 1; i > 0; i--) patterns.push(`${parts.slice(0, i).join(".")}${PREFIX_SUFFIX}`);
  patterns.push(ALL_EVENT_TYPES);
  return patterns;
}

/**
 * What a valid pattern selects, the other way round from matchingPatterns: for filters over stored
 * types. `prefix` keeps its trailing dot, so `order.*` does not select `orders.x`.
 */
export type PatternMatch = { kind: "all" } | { kind: "prefix"; prefix: string } | { kind: "exact"; type: string };

export function patternMatch(pattern: string): PatternMatch {
  if (pattern === ALL_EVENT_TYPES) return { kind: "all" };
  if (pattern.endsWith(PREFIX_SUFFIX)) return { kind: "prefix", prefix: pattern.slice(0, -1) };
  return { kind: "exact", type: pattern };
}
