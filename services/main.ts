// The one entry point: `bun services/main.ts <role>` (run-role.ts runs it). The allocator's settings
// come first, and the rest of the program is imported only after them: a process that starts
// itself again to apply them (allocator.ts) has loaded nothing else, so the restart costs the
// runtime's start and not the program's.
import { restartWithAllocatorSettings } from "./allocator.ts";

restartWithAllocatorSettings();
await import("./run-role.ts");
