// node:tls, loaded with require: an ESM `import` of a builtin builds its named exports from every property, and
// node:tls's `rootCertificates` getter then reads Node's bundled root certificates (~0.2 MB of strings) for the
// life of the process. No HBONE connection trusts them (the mesh's roots do), so only the module is taken.

import { createRequire } from "node:module";

export const nodeTls = createRequire(import.meta.url)("node:tls") as typeof import("node:tls");
