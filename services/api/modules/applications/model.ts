import { z } from "zod";
import { UID_PATTERN, type ApplicationRow } from "@evently/core/applications/sql.ts";
import { metadata, pageOf, pageQuery, timestamp } from "../../common/model.ts";

const name = z.string().trim().min(1).max(200).describe("A name for people, like the customer's.");
const uid = z
  .string()
  .regex(UID_PATTERN, "must be 1 to 64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit")
  .refine((v) => !v.startsWith("app_"), "must not start with app_ (ids do)")
  .describe(
    "Your own unique name for the application, like `customer-42`; usable wherever an application id is " +
      "(paths, the Evently-Application header), so you need not store ours.",
  );
const rateLimitPerSecond = z
  .number()
  .int()
  .min(1)
  .max(1_000_000)
  .describe(
    "Most events per second the application may ingest, across all API processes (a batch of N counts N); " +
      "beyond it ingest answers 429 with Retry-After. Null: unlimited.",
  );

export const ApplicationCreate = z
  .strictObject({
    name,
    uid: uid.nullable().default(null),
    metadata: metadata.default({}),
    rateLimitPerSecond: rateLimitPerSecond.nullable().default(null),
  })
  .meta({ id: "ApplicationCreate" });
export type ApplicationCreate = z.output<typeof ApplicationCreate>;

export const ApplicationUpdate = z
  .strictObject({
    name: name.optional(),
    uid: uid.nullable().optional(),
    metadata: metadata.optional(),
    rateLimitPerSecond: rateLimitPerSecond.nullable().optional(),
  })
  .meta({ id: "ApplicationUpdate" });
export type ApplicationUpdate = z.output<typeof ApplicationUpdate>;

export const Application = z
  .object({
    id: z.string(),
    uid: z.string().nullable(),
    name: z.string(),
    metadata: z.record(z.string(), z.string()),
    rateLimitPerSecond: z.number().int().nullable(),
    createdAt: timestamp,
    updatedAt: timestamp,
  })
  .meta({ id: "Application" });
export type Application = z.output<typeof Application>;

export const ApplicationPage = pageOf(Application).meta({ id: "ApplicationPage" });
export const ApplicationListQuery = pageQuery("application");
export type ApplicationListQuery = z.output<typeof ApplicationListQuery>;

export function presentApplication(row: ApplicationRow): Application {
  return {
    id: row.id,
    uid: row.uid,
    name: row.name,
    metadata: row.metadata,
    rateLimitPerSecond: row.rateLimitPerSecond,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}
