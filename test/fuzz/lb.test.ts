// Short fuzz budget for the lb target (target-lb.ts); the long run is `npm run fuzz`.

import { fuzzSuite } from "./suite.js";
import { lbTarget } from "./target-lb.js";

fuzzSuite(lbTarget, { minInputs: 10 });
