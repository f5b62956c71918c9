import type { Sql } from "@evently/core/db/client.ts";
import { findEndpoint } from "@evently/core/endpoints/sql.ts";
import { ConflictError, NotFoundError, ValidationError } from "@evently/core/errors.ts";
import { findEvent } from "@evently/core/events/sql.ts";
import { isId, newId } from "@evently/core/ids.ts";
import type { RecoverEndpointParams, ReplayEventParams } from "@evently/core/operations/params.ts";
import { cancelOperation, findOperation, insertOperation, listOperations } from "@evently/core/operations/sql.ts";
import { toPage, type Page } from "../../common/model.ts";
import { presentOperation, type EndpointRecover, type EventReplay, type Operation, type OperationListQuery } from "./model.ts";

/**
 * Bulk replays as operations: the API only records what is asked (an `op_…` row, queued) and
 * answers 202; a runner (core/operations/runner.ts, in the dispatcher or the workers) does the work
 * in steps, so a replay of a hundred thousand jobs neither holds a request open nor floods the
 * endpoint. Every read and write names the application.
 */
export class OperationService {
  constructor(private readonly sql: Sql) {}

  async replayEvent(appId: string, eventId: string, body: EventReplay): Promise<Operation> {
    if (!isId("event", eventId) || !(await findEvent(this.sql, appId, eventId))) throw new NotFoundError("event", eventId);
    const params: ReplayEventParams = { eventId, only: body.only };
    return presentOperation(await insertOperation(this.sql, { id: newId("operation"), appId, kind: "replay_event", params }));
  }

  async recoverEndpoint(appId: string, endpointId: string, body: EndpointRecover): Promise<Operation> {
    const endpoint = isId("endpoint", endpointId) ? await findEndpoint(this.sql, appId, endpointId) : null;
    if (!endpoint) throw new NotFoundError("endpoint", endpointId);
    const until = body.until ?? new Date();
    if (until.getTime() <= body.since.getTime()) throw new ValidationError([{ field: "until", message: "must be after since" }]);
    // Its jobs would be cancelled again by the first worker to see them: say so instead.
    if (!endpoint.enabled) throw new ConflictError(`endpoint ${endpointId} is disabled; enable it before recovering its jobs`);
    const params: RecoverEndpointParams = {
      endpointId,
      since: body.since.toISOString(),
      until: until.toISOString(),
      statuses: [...new Set(body.statuses)],
    };
    return presentOperation(await insertOperation(this.sql, { id: newId("operation"), appId, kind: "recover_endpoint", params }));
  }

  async get(appId: string, id: string): Promise<Operation> {
    const row = isId("operation", id) ? await findOperation(this.sql, appId, id) : null;
    if (!row) throw new NotFoundError("operation", id);
    return presentOperation(row);
  }

  async list(appId: string, query: OperationListQuery): Promise<Page<Operation>> {
    const { cursor, limit, ...filter } = query;
    const rows = await listOperations(this.sql, appId, { ...filter, before: cursor, limit: limit + 1 });
    return toPage(rows, limit, presentOperation);
  }

  async cancel(appId: string, id: string): Promise<Operation> {
    if (!isId("operation", id)) throw new NotFoundError("operation", id);
    const row = await cancelOperation(this.sql, appId, id);
    if (row) return presentOperation(row);
    const existing = await findOperation(this.sql, appId, id);
    if (!existing) throw new NotFoundError("operation", id);
    throw new ConflictError(`operation ${id} is ${existing.state}; only queued or running operations can be cancelled`);
  }
}
