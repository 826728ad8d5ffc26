// `node --import …/peers/gc-ballast.js peer.js`: a peer with the proxy's GC ballast (host/gc-ballast.ts: taken when bulk traffic churns mark-compacts), to measure
// a peer under the same process tuning (HBONE_BENCH_PEER_NODE_FLAGS; see peer-spawn.ts).

import { armGcBallast } from "../../../host/gc-ballast.js";

armGcBallast();
