// Short fuzz budget for the hpack target (target-hpack.ts); the long run is `npm run fuzz`.

import { fuzzSuite } from "./suite.js";
import { hpackTarget } from "./target-hpack.js";

fuzzSuite(hpackTarget, { minInputs: 50 });
