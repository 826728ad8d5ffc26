// Every fuzz target, by name (one module each).

import type { Target } from "./harness.js";
import { framesTarget } from "./target-frames.js";
import { hpackTarget } from "./target-hpack.js";
import { baggageTarget } from "./target-baggage.js";
import { lbTarget } from "./target-lb.js";
import { sessionTarget } from "./target-session.js";

export const TARGETS: readonly Target[] = [framesTarget, hpackTarget, baggageTarget, lbTarget, sessionTarget];

export function targetNamed(name: string): Target {
  const t = TARGETS.find((x) => x.name === name);
  if (!t) throw new Error(`no fuzz target ${name} (have ${TARGETS.map((x) => x.name).join(", ")})`);
  return t;
}
