// The entry point's first import: nothing else has run yet when this may start the process again
// with the allocator's settings (allocator.ts).
import { restartWithAllocatorSettings } from "./allocator.ts";

restartWithAllocatorSettings();
