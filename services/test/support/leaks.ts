import { secretKey } from "../../core/signing/index.ts";

/**
 * Looking for secrets in what an installation wrote: each secret under a name, each piece of
 * captured text under the corpus it came from, and a report that says which secret turned up where
 * without printing the secret itself.
 */
export interface Secret {
  name: string;
  value: string;
}

export interface Captured {
  /** Where the text came from: `logs`, `spans`, `metrics`, `db:attempts`, `http`, … */
  corpus: string;
  /** Which piece of it: a log line's message, a response's method and path, … */
  label: string;
  text: string;
}

// Shorter values could turn up by chance and make a grep for them meaningless.
const MIN_SECRET_LENGTH = 12;

/** `value` and the forms it would take on its way into a URL or a log: percent-encoded. */
function spellings(secret: Secret): Secret[] {
  const encoded = encodeURIComponent(secret.value);
  return encoded === secret.value ? [secret] : [secret, { name: `${secret.name} (percent-encoded)`, value: encoded }];
}

/**
 * A Standard Webhooks signing secret in every form code might print it: as given, its base64 body,
 * and the decoded key as hex or as a Buffer's JSON (`{"type":"Buffer","data":[…]}`).
 */
export function signingSecret(name: string, secret: string): Secret[] {
  const key = secretKey(secret);
  return [
    { name, value: secret },
    { name: `${name} (base64 body)`, value: secret.slice(secret.indexOf("_") + 1) },
    { name: `${name} (key as hex)`, value: key.toString("hex") },
    { name: `${name} (key as Buffer JSON)`, value: `[${[...key].join(",")}]` },
  ];
}

/** A URL's password, and the HTTP Basic credentials made from it. */
export function urlPassword(name: string, username: string, password: string): Secret[] {
  return [
    { name, value: password },
    { name: `${name} (Basic credentials)`, value: Buffer.from(`${username}:${password}`).toString("base64") },
  ];
}

/** The password of a connection URL (database, broker), if it has one, as `user:password@`. */
export function connectionPassword(name: string, url: string): Secret[] {
  const parsed = new URL(url);
  return parsed.password === "" ? [] : [{ name, value: `${parsed.username}:${parsed.password}@` }];
}

/** Every secret found in `captured`, one line each: secret, corpus, label and a masked excerpt. */
export function findLeaks(secrets: Secret[], captured: Captured[]): string[] {
  const all = secrets.flatMap(spellings);
  const short = all.filter((s) => s.value.length < MIN_SECRET_LENGTH);
  if (short.length > 0) throw new Error(`secrets too short to grep for: ${short.map((s) => s.name).join(", ")}`);
  const leaks: string[] = [];
  for (const item of captured) {
    if (!all.some((s) => item.text.includes(s.value))) continue;
    const masked = mask(item.text, all);
    for (const secret of all) {
      // Absent when this value was part of a longer secret: that one is reported instead.
      const at = masked.indexOf(`‹${secret.name}›`);
      if (at === -1) continue;
      const excerpt = masked.slice(Math.max(0, at - 60), at + secret.name.length + 62).replace(/\s+/g, " ");
      leaks.push(`${secret.name} found in ${item.corpus} (${item.label}): …${excerpt}…`);
    }
  }
  return leaks;
}

/** `text` with every secret replaced by its name, longest first (one secret may contain another). */
function mask(text: string, secrets: Secret[]): string {
  const longestFirst = [...secrets].sort((a, b) => b.value.length - a.value.length);
  return longestFirst.reduce((t, s) => t.replaceAll(s.value, `‹${s.name}›`), text);
}
