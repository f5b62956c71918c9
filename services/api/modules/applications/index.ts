import { defineOperation, type ApiOperation } from "../../../http/operation.ts";
import { Application, ApplicationCreate, ApplicationListQuery, ApplicationPage, ApplicationUpdate } from "./model.ts";
import type { ApplicationService } from "./service.ts";

const tag = "applications";
const idOrUid = "`{id}` is the application's id or its uid.";

/** Applications (tenants): admin key only. */
export function applicationOperations(applications: ApplicationService): ApiOperation[] {
  return [
    defineOperation({
      method: "POST",
      path: "/applications",
      operationId: "createApplication",
      summary: "Create an application",
      tag,
      access: "admin",
      body: ApplicationCreate,
      status: 201,
      response: Application,
      errors: [409],
      handle: ({ body }) => applications.create(body),
    }),
    defineOperation({
      method: "GET",
      path: "/applications",
      operationId: "listApplications",
      summary: "List applications, newest first",
      tag,
      access: "admin",
      query: ApplicationListQuery,
      status: 200,
      response: ApplicationPage,
      handle: ({ query }) => applications.list(query),
    }),
    defineOperation({
      method: "GET",
      path: "/applications/:id",
      operationId: "getApplication",
      summary: "Get an application",
      description: idOrUid,
      tag,
      access: "admin",
      status: 200,
      response: Application,
      handle: ({ params }) => applications.get(params.id!),
    }),
    defineOperation({
      method: "PATCH",
      path: "/applications/:id",
      operationId: "updateApplication",
      summary: "Change some of an application's fields",
      description: `${idOrUid} A changed rate limit applies on every API process as soon as it hears of the change (LISTEN/NOTIFY).`,
      tag,
      access: "admin",
      body: ApplicationUpdate,
      status: 200,
      response: Application,
      errors: [409],
      handle: ({ params, body }) => applications.update(params.id!, body),
    }),
    defineOperation({
      method: "DELETE",
      path: "/applications/:id",
      operationId: "deleteApplication",
      summary: "Delete an application with its keys, endpoints, routes, events, jobs and attempts",
      description: idOrUid,
      tag,
      access: "admin",
      status: 204,
      errors: [503],
      handle: ({ params }) => applications.remove(params.id!),
    }),
  ];
}
