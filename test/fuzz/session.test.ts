// Short fuzz budget for the session target (target-session.ts); the long run is `npm run fuzz`.

import { fuzzSuite } from "./suite.js";
import { sessionTarget } from "./target-session.js";

fuzzSuite(sessionTarget, { minInputs: 5 });
