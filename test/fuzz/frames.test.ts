// Short fuzz budget for the frames target (target-frames.ts); the long run is `npm run fuzz`.

import { fuzzSuite } from "./suite.js";
import { framesTarget } from "./target-frames.js";

fuzzSuite(framesTarget, { minInputs: 50 });
