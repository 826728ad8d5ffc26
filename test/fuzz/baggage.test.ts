// Short fuzz budget for the baggage target (target-baggage.ts); the long run is `npm run fuzz`.

import { fuzzSuite } from "./suite.js";
import { baggageTarget } from "./target-baggage.js";

fuzzSuite(baggageTarget, { minInputs: 50 });
