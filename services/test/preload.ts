import { prepareTemplate } from "./support/database.ts";

// Runs once per `bun test` process: migrates the template every test file clones.
await prepareTemplate();
