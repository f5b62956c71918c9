import type { Sql } from "@evently/core/db/client.ts";
import {
  deleteEndpoint,
  findEndpoint,
  findSecret,
  insertEndpoint,
  listEndpoints,
  lockEndpointValues,
  replaceSecret,
  updateEndpoint,
  type EndpointRow,
} from "@evently/core/endpoints/sql.ts";
import { NotFoundError } from "@evently/core/errors.ts";
import { isId, newId } from "@evently/core/ids.ts";
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

export class EndpointService {
  constructor(private readonly sql: Sql) {}

  /** Creates the endpoint and, when `eventTypes` is given, its routes, in one transaction. */
  async create(input: EndpointCreate): Promise<Endpoint & { secret: string }> {
    const id = newId("endpoint");
    const secret = generateSecret();
    const { eventTypes, ...values } = input;
    const row = await this.sql.begin(async (tx) => {
      await insertEndpoint(tx, id, secret, values);
      if (eventTypes) await setEndpointEventTypes(tx, id, unique(eventTypes));
      return findEndpoint(tx, id);
    });
    return { ...presentEndpoint(row!), secret };
  }

  async get(id: string): Promise<Endpoint> {
    return presentEndpoint(await this.row(id));
  }

  async list(query: EndpointListQuery): Promise<Page<Endpoint>> {
    const rows = await listEndpoints(this.sql, { before: query.cursor, limit: query.limit + 1 });
    return toPage(rows, query.limit, presentEndpoint);
  }

  /** Applies the given fields only; `eventTypes`, when given, replaces the endpoint's routes. */
  async update(id: string, patch: EndpointUpdate): Promise<Endpoint> {
    if (!isId("endpoint", id)) throw new NotFoundError("endpoint", id);
    const { eventTypes, ...changes } = patch;
    const row = await this.sql.begin(async (tx) => {
      const current = await lockEndpointValues(tx, id);
      if (!current) return null;
      const defined = Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined));
      await updateEndpoint(tx, id, { ...current, ...defined });
      if (eventTypes) await setEndpointEventTypes(tx, id, unique(eventTypes));
      return findEndpoint(tx, id);
    });
    if (!row) throw new NotFoundError("endpoint", id);
    return presentEndpoint(row);
  }

  async remove(id: string): Promise<void> {
    if (!isId("endpoint", id) || !(await deleteEndpoint(this.sql, id))) throw new NotFoundError("endpoint", id);
  }

  async secret(id: string): Promise<{ secret: string }> {
    const secret = isId("endpoint", id) ? await findSecret(this.sql, id) : null;
    if (secret === null) throw new NotFoundError("endpoint", id);
    return { secret };
  }

  /**
   * Replaces the secret at once. Deliveries already signed with the old one are not re-signed;
   * a grace period with both secrets is a later feature.
   */
  async rotateSecret(id: string): Promise<{ secret: string }> {
    const secret = generateSecret();
    if (!isId("endpoint", id) || !(await replaceSecret(this.sql, id, secret))) throw new NotFoundError("endpoint", id);
    return { secret };
  }

  private async row(id: string): Promise<EndpointRow> {
    const row = isId("endpoint", id) ? await findEndpoint(this.sql, id) : null;
    if (!row) throw new NotFoundError("endpoint", id);
    return row;
  }
}

const unique = (values: string[]) => [...new Set(values)];
