// The baggage keys ztunnel reads and writes, laid out once at instantiation as bytes, so
// decoding compares and encoding copies without touching AssemblyScript strings.

import {
  BAGGAGE_SLOT_CLUSTER, BAGGAGE_SLOT_NAMESPACE, BAGGAGE_SLOT_WORKLOAD, BAGGAGE_SLOT_SERVICE, BAGGAGE_SLOT_REVISION,
  BAGGAGE_SLOT_REGION, BAGGAGE_SLOT_ZONE, BAGGAGE_TYPE_NONE, BAGGAGE_TYPE_DEPLOYMENT,
} from "./abi";

// Key k fills slot KEY_SLOT[k]; the four workload keys come in type order (type t is key WORKLOAD_KEY0 + t - 1).
const KEY_SOURCE =
  "k8s.cluster.name\nk8s.namespace.name\nservice.name\nservice.version\ncloud.region\ncloud.availability_zone\n" +
  "k8s.deployment.name\nk8s.cronjob.name\nk8s.pod.name\nk8s.job.name\n";
const KEY_COUNT: i32 = 10;
const WORKLOAD_KEY0: i32 = 6;
const KEY_SLOT = memory.data<i32>([
  BAGGAGE_SLOT_CLUSTER, BAGGAGE_SLOT_NAMESPACE, BAGGAGE_SLOT_SERVICE, BAGGAGE_SLOT_REVISION, BAGGAGE_SLOT_REGION,
  BAGGAGE_SLOT_ZONE, BAGGAGE_SLOT_WORKLOAD, BAGGAGE_SLOT_WORKLOAD, BAGGAGE_SLOT_WORKLOAD, BAGGAGE_SLOT_WORKLOAD,
]);
// Per slot (workload excluded), its key.
const SLOT_KEY = memory.data<i32>([0, 1, -1, 2, 3, 4, 5]);

/** Lengths of the shortest ("k8s.pod.name") and longest ("cloud.availability_zone") keys. */
const MIN_KEY_LEN: i32 = 12;
export const MAX_KEY_LEN: i32 = 23;

const keyBytes: usize = memory.data(256);
const keyOff: usize = memory.data(KEY_COUNT); // u8 offsets into keyBytes
const keyLen: usize = memory.data(KEY_COUNT);

function initKeys(): void {
  let k = 0;
  let start = 0;
  for (let i = 0; i < KEY_SOURCE.length; i++) {
    const c = KEY_SOURCE.charCodeAt(i);
    if (c == 10) {
      store<u8>(keyOff + k, <u8>start);
      store<u8>(keyLen + k, <u8>(i - start));
      k++;
      start = i + 1;
    } else {
      store<u8>(keyBytes + i, <u8>c);
    }
  }
}
initKeys();

/** Slot filled by `key`, or -1 for unknown keys; `keyType` tells the workload type (0 for other slots). */
export let keyType: i32 = BAGGAGE_TYPE_NONE;

/** The slot the key bytes [p, p+n) fill, or -1 when ztunnel ignores that key. */
export function slotOfKey(p: usize, n: i32): i32 {
  if (n < MIN_KEY_LEN || n > MAX_KEY_LEN) return -1; // most application keys stop here
  for (let k = 0; k < KEY_COUNT; k++) {
    if (<i32>load<u8>(keyLen + k) == n && memory.compare(keyBytes + load<u8>(keyOff + k), p, <usize>n) == 0) {
      keyType = k >= WORKLOAD_KEY0 ? k - WORKLOAD_KEY0 + BAGGAGE_TYPE_DEPLOYMENT : BAGGAGE_TYPE_NONE;
      return load<i32>(KEY_SLOT + (<usize>k << 2));
    }
  }
  return -1;
}

/** Writes the key of `slot` (for the workload slot, the key of workload `type`) at o; returns its end. */
export function writeKey(o: usize, slot: i32, type: i32): usize {
  const k = slot == BAGGAGE_SLOT_WORKLOAD ? WORKLOAD_KEY0 + type - BAGGAGE_TYPE_DEPLOYMENT : load<i32>(SLOT_KEY + (<usize>slot << 2));
  const n = <usize>load<u8>(keyLen + k);
  memory.copy(o, keyBytes + load<u8>(keyOff + k), n);
  return o + n;
}
