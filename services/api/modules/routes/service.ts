import type { Sql } from "@evently/core/db/client.ts";
import { ConflictError, NotFoundError } from "@evently/core/errors.ts";
import { isId } from "@evently/core/ids.ts";
import { deleteRoute, findRoute, insertRoute, listRoutes } from "@evently/core/routes/sql.ts";
import { toPage, type Page } from "../../common/model.ts";
import { invalid } from "../../../http/validate.ts";
import { presentRoute, type Route, type RouteCreate, type RouteListQuery } from "./model.ts";

const UNIQUE_VIOLATION = "23505";
const FOREIGN_KEY_VIOLATION = "23503";

export class RouteService {
  constructor(private readonly sql: Sql) {}

  /**
   * The database decides duplicates and unknown endpoints (no check-then-insert race). An unknown
   * endpoint is a 422 naming `endpointId`, not a 404: the missing thing is named by a body field.
   */
  async create(appId: string, input: RouteCreate): Promise<Route> {
    try {
      return presentRoute(await insertRoute(this.sql, appId, input.endpointId, input.eventType));
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === FOREIGN_KEY_VIOLATION) invalid("endpointId", `endpoint ${input.endpointId} does not exist`);
      if (code === UNIQUE_VIOLATION) {
        throw new ConflictError(`endpoint ${input.endpointId} already has a route for ${input.eventType}`);
      }
      throw err;
    }
  }

  async get(appId: string, id: string): Promise<Route> {
    const row = isId("route", id) ? await findRoute(this.sql, appId, id) : null;
    if (!row) throw new NotFoundError("route", id);
    return presentRoute(row);
  }

  async list(appId: string, query: RouteListQuery): Promise<Page<Route>> {
    const rows = await listRoutes(this.sql, appId, { endpointId: query.endpointId, before: query.cursor, limit: query.limit + 1 });
    return toPage(rows, query.limit, presentRoute);
  }

  async remove(appId: string, id: string): Promise<void> {
    if (!isId("route", id) || !(await deleteRoute(this.sql, appId, id))) throw new NotFoundError("route", id);
  }
}
