// The bench's first import: it may start the bench again with the allocator settings Evently's
// roles run with (services/allocator.ts), before anything else has run; every process the bench
// starts (roles, peers) inherits them.
import { restartWithAllocatorSettings } from "../../services/allocator.ts";

restartWithAllocatorSettings();
