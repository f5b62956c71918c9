import {
  deleteApplication,
  findApplication,
  insertApplication,
  listApplications,
  lockApplication,
  updateApplication,
  type ApplicationRow,
} from "@evently/core/applications/sql.ts";
import type { Sql } from "@evently/core/db/client.ts";
import { ConflictError, NotFoundError } from "@evently/core/errors.ts";
import { newId } from "@evently/core/ids.ts";
import { toPage, type Page } from "../../common/model.ts";
import {
  presentApplication,
  type Application,
  type ApplicationCreate,
  type ApplicationListQuery,
  type ApplicationUpdate,
} from "./model.ts";

const UNIQUE_VIOLATION = "23505";

/** Applications are addressed by id or uid everywhere (see findApplication). */
export class ApplicationService {
  constructor(private readonly sql: Sql) {}

  async create(input: ApplicationCreate): Promise<Application> {
    return presentApplication(await uidTaken(input.uid, () => insertApplication(this.sql, newId("application"), input)));
  }

  async get(idOrUid: string): Promise<Application> {
    return presentApplication(await this.row(idOrUid));
  }

  async list(query: ApplicationListQuery): Promise<Page<Application>> {
    const rows = await listApplications(this.sql, { before: query.cursor, limit: query.limit + 1 });
    return toPage(rows, query.limit, presentApplication);
  }

  async update(idOrUid: string, patch: ApplicationUpdate): Promise<Application> {
    const { id } = await this.row(idOrUid);
    const row = await uidTaken(patch.uid ?? null, () =>
      this.sql.begin(async (tx) => {
        const current = await lockApplication(tx, id);
        if (!current) return null;
        const defined = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined));
        return updateApplication(tx, id, { ...current, ...defined });
      }),
    );
    if (!row) throw new NotFoundError("application", idOrUid);
    return presentApplication(row);
  }

  /** Deletes the application with everything in it: keys, endpoints, routes, events, jobs and attempts. */
  async remove(idOrUid: string): Promise<void> {
    const { id } = await this.row(idOrUid);
    if (!(await deleteApplication(this.sql, id))) throw new NotFoundError("application", idOrUid);
  }

  async row(idOrUid: string): Promise<ApplicationRow> {
    const row = await findApplication(this.sql, idOrUid);
    if (!row) throw new NotFoundError("application", idOrUid);
    return row;
  }
}

/** The database decides uniqueness of uids (no check-then-insert race); a clash is a 409. */
async function uidTaken<T>(uid: string | null, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if ((err as { code?: string }).code === UNIQUE_VIOLATION) throw new ConflictError(`uid ${uid} belongs to another application`);
    throw err;
  }
}
