import type { Sql } from "@evently/core/db/client.ts";
import type { TxSql } from "@evently/core/db/client.ts";
import {
  changeEndpointStatus,
  deleteEndpoint,
  findEndpoint,
  findSecret,
  insertEndpoint,
  listEndpoints,
  lockEndpointStatus,
  lockEndpointValues,
  releaseHeldJobs,
  replaceSecret,
  updateEndpoint,
  type EndpointRow,
  type EndpointStatus,
} from "@evently/core/endpoints/sql.ts";
import { BlockedAddressError, ConflictError, NotFoundError, ValidationError, type FieldProblem } from "@evently/core/errors.ts";
import { isId, newId } from "@evently/core/ids.ts";
import type { BlockedAddress } from "@evently/core/net/addresses.ts";
import type { AddressPolicy } from "@evently/core/net/policy.ts";
import type { SecretCipher } from "@evently/core/secrets/cipher.ts";
import { encryptHeaders, encryptUrlPassword, readStored } from "@evently/core/secrets/fields.ts";
import { hasRedactedPassword, isSensitiveHeader, REDACTED } from "@evently/core/redact.ts";
import { setEndpointEventTypes } from "@evently/core/routes/sql.ts";
import { generateSecret } from "@evently/core/signing/index.ts";
import { toPage, type Page } from "../../common/model.ts";
import {
  presentEndpoint,
  type Endpoint,
  type EndpointCreate,
  type EndpointListQuery,
  type EndpointUpdate,
} from "./model.ts";

export interface EndpointServiceOptions {
  /** Which addresses deliveries may go to (DELIVERY_ALLOWED_CIDRS, DELIVERY_ALLOW_PRIVATE_NETWORKS): the worker's policy too. */
  addressPolicy: AddressPolicy;
  /** Encrypts secrets and credential header values before they are stored (ENCRYPTION_KEY). */
  cipher: SecretCipher;
}

/** How long saving an endpoint waits for DNS before accepting the name (see checkUrl). */
const DNS_TIMEOUT_MS = 2000;
// Long enough for every worker to hear of a resume (LISTEN/NOTIFY takes milliseconds).
const LATE_HOLD_RELEASE_MS = 2000;

export class EndpointService {
  constructor(
    private readonly sql: Sql,
    private readonly options: EndpointServiceOptions,
  ) {}

  /** Creates the endpoint and, when `eventTypes` is given, its routes, in one transaction. */
  async create(appId: string, input: EndpointCreate): Promise<Endpoint & { secret: string }> {
    await this.checkUrl(input.url);
    const id = newId("endpoint");
    const secret = generateSecret();
    const { eventTypes, ...given } = input;
    // Nothing is stored yet, so a redaction marker has nothing to keep: refused.
    const values = {
      ...given,
      url: await encryptUrlPassword(this.options.cipher, keepRedactedPassword(given.url, null)),
      headers: await this.storedHeaders(given.headers, {}),
    };
    const storedSecret = await this.options.cipher.encrypt(secret);
    const row = await this.sql.begin(async (tx) => {
      await insertEndpoint(tx, appId, id, storedSecret, values);
      if (eventTypes) await setEndpointEventTypes(tx, appId, id, unique(eventTypes));
      return findEndpoint(tx, appId, id);
    });
    return { ...presentEndpoint(row!), secret };
  }

  async get(appId: string, id: string): Promise<Endpoint> {
    return presentEndpoint(await this.row(appId, id));
  }

  async list(appId: string, query: EndpointListQuery): Promise<Page<Endpoint>> {
    const rows = await listEndpoints(this.sql, appId, { before: query.cursor, limit: query.limit + 1 });
    return toPage(rows, query.limit, presentEndpoint);
  }

  /**
   * Applies the given fields only; `eventTypes`, when given, replaces the endpoint's routes, and
   * `enabled`/`paused` change the status as the status routes do (reasons "… by update").
   */
  async update(appId: string, id: string, patch: EndpointUpdate): Promise<Endpoint> {
    if (!isId("endpoint", id)) throw new NotFoundError("endpoint", id);
    if (patch.url !== undefined) await this.checkUrl(patch.url);
    const { eventTypes, enabled, paused, ...changes } = patch;
    // Encrypted before the transaction: no row lock is held across the cipher's work. A url whose
    // password is the redaction marker keeps the stored (encrypted) one below.
    const freshHeaders = changes.headers && (await this.encryptFresh(changes.headers));
    const freshUrl =
      changes.url === undefined || hasRedactedPassword(changes.url) ? changes.url : await encryptUrlPassword(this.options.cipher, changes.url);
    const row = await this.sql.begin(async (tx) => {
      const locked = await lockEndpointValues(tx, appId, id);
      if (!locked) return null;
      const { paused: wasPaused, ...current } = locked;
      const defined = Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined));
      const next = { ...current, ...defined };
      // An endpoint read from the API and written back carries redaction markers: they keep what is stored.
      if (freshUrl !== undefined) next.url = keepRedactedPassword(freshUrl, current.url);
      if (freshHeaders !== undefined) next.headers = keepRedactedHeaders(freshHeaders, current.headers);
      refuseCredentialsMovedElsewhere(current, next);
      await updateEndpoint(tx, appId, id, next);
      const from: EndpointStatus = !current.enabled ? "disabled" : wasPaused ? "paused" : "active";
      if (await applyStatus(tx, appId, id, from, { enabled, paused }, null, BY_UPDATE)) this.releaseLateHolds(id);
      if (eventTypes) await setEndpointEventTypes(tx, appId, id, unique(eventTypes));
      return findEndpoint(tx, appId, id);
    });
    if (!row) throw new NotFoundError("endpoint", id);
    return presentEndpoint(row);
  }

  /** Holds the endpoint's jobs (no attempts) until resume; 409 when it is disabled. */
  pause(appId: string, id: string, reason: string | null): Promise<Endpoint> {
    return this.setStatus(appId, id, { paused: true }, reason, BY_OPERATOR);
  }

  /** Ends a pause and brings the held jobs forward; a no-op for an active or disabled endpoint. */
  resume(appId: string, id: string): Promise<Endpoint> {
    return this.setStatus(appId, id, { paused: false }, null, BY_OPERATOR);
  }

  disable(appId: string, id: string, reason: string | null): Promise<Endpoint> {
    return this.setStatus(appId, id, { enabled: false }, reason, BY_OPERATOR);
  }

  enable(appId: string, id: string): Promise<Endpoint> {
    return this.setStatus(appId, id, { enabled: true }, null, BY_OPERATOR);
  }

  private async setStatus(appId: string, id: string, wanted: WantedStatus, reason: string | null, defaults: DefaultReasons): Promise<Endpoint> {
    if (!isId("endpoint", id)) throw new NotFoundError("endpoint", id);
    const row = await this.sql.begin(async (tx) => {
      const from = await lockEndpointStatus(tx, appId, id);
      if (from === null) return null;
      if (await applyStatus(tx, appId, id, from, wanted, reason, defaults)) this.releaseLateHolds(id);
      return findEndpoint(tx, appId, id);
    });
    if (!row) throw new NotFoundError("endpoint", id);
    return presentEndpoint(row);
  }

  /**
   * A worker that held a job in the moment between a resume's commit and its hearing of it holds it
   * for PAUSED_HOLD_MS; a second release, once every worker has heard, brings such jobs forward too.
   * Best effort: if this process dies first, they go when their hold ends.
   */
  private releaseLateHolds(id: string): void {
    setTimeout(() => void releaseHeldJobs(this.sql, [id]).catch(() => {}), LATE_HOLD_RELEASE_MS).unref?.();
  }

  async remove(appId: string, id: string): Promise<void> {
    if (!isId("endpoint", id) || !(await deleteEndpoint(this.sql, appId, id))) throw new NotFoundError("endpoint", id);
  }

  async secret(appId: string, id: string): Promise<{ secret: string }> {
    const stored = isId("endpoint", id) ? await findSecret(this.sql, appId, id) : null;
    if (stored === null) throw new NotFoundError("endpoint", id);
    return { secret: await readStored(this.options.cipher, stored) };
  }

  /**
   * Makes a new secret; the old one keeps signing, next to it, for `graceSeconds` (0: not at all).
   * Deliveries already sent are not re-signed.
   */
  async rotateSecret(appId: string, id: string, graceSeconds: number): Promise<{ secret: string; previousSecretExpiresAt: string | null }> {
    const secret = generateSecret();
    const stored = await this.options.cipher.encrypt(secret);
    // The replaced secret moves to previous_secret as stored: it is encrypted already.
    const rotated = isId("endpoint", id) ? await replaceSecret(this.sql, appId, id, stored, graceSeconds) : null;
    if (!rotated) throw new NotFoundError("endpoint", id);
    return { secret, previousSecretExpiresAt: rotated.previousSecretExpiresAt?.toISOString() ?? null };
  }

  /**
   * The SSRF guard at the door: an endpoint whose host is, or resolves to, a non-public address
   * would only fail every delivery, so it is refused now, with the reason. The worker checks again
   * before every attempt; that check, not this one, is the guard, as DNS answers can change.
   */
  private async checkUrl(url: string): Promise<void> {
    const host = new URL(url).hostname;
    let blocked: BlockedAddress | null;
    try {
      blocked = await withTimeout(this.options.addressPolicy.findBlockedAddress(host), DNS_TIMEOUT_MS);
    } catch {
      // A name that does not resolve (or not in time) is accepted: its DNS may be set up after the
      // endpoint, and refusing it would stop no attack, since the name could later resolve to
      // anything. The delivery-time check refuses it then if it points somewhere private.
      return;
    }
    if (!blocked) return;
    const literal = host.replace(/^\[|\]$/g, "") === blocked.address;
    const where = literal ? blocked.address : `${host} resolves to ${blocked.address}, which`;
    throw new BlockedAddressError(
      "url",
      `${where} is a non-public address (${blocked.addressClass}); deliveries to non-public addresses are refused ` +
        "unless their range is in DELIVERY_ALLOWED_CIDRS (DELIVERY_ALLOW_PRIVATE_NETWORKS=true allows every address)",
    );
  }

  /** Headers as stored: credential values encrypted, redaction markers replaced by what `stored` holds. */
  private async storedHeaders(given: Record<string, string>, stored: Record<string, string>): Promise<Record<string, string>> {
    return keepRedactedHeaders(await this.encryptFresh(given), stored);
  }

  /** Credential values given in the request encrypted; redaction markers left for keepRedactedHeaders. */
  private async encryptFresh(given: Record<string, string>): Promise<Record<string, string>> {
    const fresh = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== REDACTED));
    return { ...given, ...(await encryptHeaders(this.options.cipher, fresh)) };
  }

  private async row(appId: string, id: string): Promise<EndpointRow> {
    const row = isId("endpoint", id) ? await findEndpoint(this.sql, appId, id) : null;
    if (!row) throw new NotFoundError("endpoint", id);
    return row;
  }
}

const unique = (values: string[]) => [...new Set(values)];

/** What a call asks of `enabled` and `paused`; absent: left as it is. */
interface WantedStatus {
  enabled?: boolean;
  paused?: boolean;
}

interface DefaultReasons {
  paused: string;
  disabled: string;
}

const BY_OPERATOR: DefaultReasons = { paused: "paused by operator", disabled: "disabled by operator" };
const BY_UPDATE: DefaultReasons = { paused: "paused by update", disabled: "disabled by update" };

/**
 * The status after a change, the one rule the status routes and PATCH share: disabling ends a
 * pause (a disabled endpoint has no jobs to hold, and enabling starts it active); a disabled
 * endpoint cannot be paused (409) but "not paused" is true of it already, so resume is a no-op.
 */
export function nextStatus(from: EndpointStatus, wanted: WantedStatus): EndpointStatus {
  const enabled = wanted.enabled ?? from !== "disabled";
  if (!enabled) {
    if (wanted.paused === true) {
      throw new ConflictError("a disabled endpoint cannot be paused: enable it first (or PATCH enabled and paused both true)");
    }
    return "disabled";
  }
  return (wanted.paused ?? from === "paused") ? "paused" : "active";
}

/**
 * Changes the status of an endpoint locked by the caller. A repeat without a new reason writes
 * nothing. Leaving a pause brings the held jobs forward in the same transaction, so they go as
 * soon as workers hear of the resume, and answers true: the caller releases once more a moment
 * later (releaseLateHolds).
 */
async function applyStatus(
  tx: TxSql,
  appId: string,
  id: string,
  from: EndpointStatus,
  wanted: WantedStatus,
  reason: string | null,
  defaults: DefaultReasons,
): Promise<boolean> {
  const to = nextStatus(from, wanted);
  if (to === from && reason === null) return false;
  const defaultReason = to === "paused" ? defaults.paused : to === "disabled" ? defaults.disabled : null;
  await changeEndpointStatus(tx, appId, id, { to, reason, defaultReason });
  if (from !== "paused" || to !== "active") return false;
  await releaseHeldJobs(tx, [id]);
  return true;
}

/** Header values given as REDACTED (as the API reads them) replaced by the stored ones; 422 if none is stored. */
function keepRedactedHeaders(given: Record<string, string>, stored: Record<string, string>): Record<string, string> {
  const out = { ...given };
  const problems: FieldProblem[] = [];
  for (const [name, value] of Object.entries(given)) {
    if (value !== REDACTED) continue;
    const kept = stored[name];
    if (kept === undefined) {
      problems.push({ field: `headers.${name}`, message: `is ${REDACTED}, which keeps a stored value, but there is none; give the value` });
    } else {
      out[name] = kept;
    }
  }
  if (problems.length > 0) throw new ValidationError(problems);
  return out;
}

/**
 * Stored credential headers follow a url to another origin only when given again: whoever may edit
 * the endpoint cannot read them, and must not be able to send them to a host of their choosing (the
 * same rule as for the url's password, keepRedactedPassword). Kept values are the stored ciphertext
 * unchanged; values given in the request were just encrypted afresh, with a new IV.
 */
function refuseCredentialsMovedElsewhere(
  current: { url: string; headers: Record<string, string> },
  next: { url: string; headers: Record<string, string> },
): void {
  if (new URL(current.url).origin === new URL(next.url).origin) return;
  const kept = Object.keys(next.headers).filter((name) => isSensitiveHeader(name) && next.headers[name] === current.headers[name]);
  if (kept.length === 0) return;
  throw new ValidationError(
    kept.map((name) => ({
      field: `headers.${name}`,
      message: "would keep its stored value while the url moves to another origin; give the value again, or leave the header out",
    })),
  );
}

/**
 * A url whose password is REDACTED (as the API reads it) with the stored password put back. Only for
 * the same scheme, host, port and username: otherwise the stored password would go somewhere new.
 */
function keepRedactedPassword(given: string, stored: string | null): string {
  if (!hasRedactedPassword(given)) return given;
  const next = new URL(given);
  const old = stored !== null && URL.canParse(stored) ? new URL(stored) : null;
  if (!old || old.password === "" || old.origin !== next.origin || old.username !== next.username) {
    throw new ValidationError([
      {
        field: "url",
        message:
          `has the password ${REDACTED}, which keeps the stored one only for a url with one and the same ` +
          "scheme, host, port and username; give the password",
      },
    ]);
  }
  next.password = old.password;
  return next.href === old.href ? stored! : next.href;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
