// Load-balancing tables: per service, its endpoints as flat records (layout.ts) that the host writes once per
// config change. A pick filters and ranks them by ztunnel's rules, keeps the best rank among endpoints not
// ejected by outlier detection, and draws one weighted by capacity. The candidate set of a (port, policy,
// source) is cached in the table, so a repeated pick is a binary search; it is rebuilt when an ejection starts,
// is lifted early, or ends.

import { allocSystem as alloc, allocZeroed, free, reserve, Region } from "../memory";
import {
  LB_NETWORK, LB_CLUSTER, LB_REGION, LB_ZONE, LB_SUBZONE, LB_NODE, LB_ENDPOINT_ID, LB_FLAGS, LB_CAPACITY, LB_TARGETS, LB_HEALTHY, LB_HAS_ADDRESS,
  LB_HAS_GATEWAY, LB_MODE_MASK, LB_MODE_ALL, LB_MODE_STRICT, LB_ALLOW_ALL, LB_SAME_CLUSTER, LB_SAME_NETWORK,
  LB_PREFS_COUNT_SHIFT, LB_PREFS_SHIFT, LB_MAX_PREFS, LB_MAX_ENDPOINTS, LB_MAX_PORTS, LB_MAX_TABLE_BYTES,
} from "./layout";
import { Ctx, ejectedUntil } from "./outlier";

// ---------------------------------------------------------------------------------------------------------------
// Tables

@unmanaged export class Table {
  ctx: Ctx;
  count: i32;
  ports: i32;
  /** Bytes per record. */
  stride: i32;
  records: usize;
  /** WAYS cached candidate sets, replaced in turn. */
  ways: usize;
  nextWay: i32;
}

const WAYS: i32 = 4;

/** A cached candidate set: endpoints of one rank, with cumulative capacities for the weighted draw. */
@unmanaged class Candidates {
  // The key, as a pick writes it to `key`: port index, policy, then the source's six locality ids.
  k0: i64;
  k1: i64;
  k2: i64;
  k3: i64;
  generation: i32;
  rank: i32;
  count: i32;
  capacity: i32;
  /** `capacity` f64 cumulative weights, then `capacity` i32 record indices. */
  items: usize;
  total: f64;
  /** When the earliest ejection among the filtered endpoints ends: the set changes then. */
  expiry: f64;
}

const ITEM_BYTES: i32 = 12;

/** A new table of `count` zeroed records with `ports` target words each, for the host to write; 0 past the limits. */
export function tableNew(c: Ctx, count: i32, ports: i32): usize {
  if (count < 0 || count > LB_MAX_ENDPOINTS || ports < 0 || ports > LB_MAX_PORTS) return 0;
  const stride = (LB_TARGETS + ports) << 2;
  if (<i64>count * stride > LB_MAX_TABLE_BYTES) return 0;
  const t = changetype<Table>(alloc(offsetof<Table>()));
  t.ctx = c;
  t.count = count;
  t.ports = ports;
  t.stride = stride;
  t.records = allocZeroed(count * stride);
  t.ways = allocZeroed(WAYS * offsetof<Candidates>());
  t.nextWay = 0;
  return changetype<usize>(t);
}

@inline function wayOf(t: Table, w: i32): Candidates {
  return changetype<Candidates>(t.ways + <usize>w * offsetof<Candidates>());
}

export function tableFree(t: Table): void {
  if (lastSet >= t.ways && lastSet < t.ways + WAYS * offsetof<Candidates>()) lastSet = 0;
  for (let w = 0; w < WAYS; w++) {
    const e = wayOf(t, w);
    free(e.items, e.capacity * ITEM_BYTES);
  }
  free(t.ways, WAYS * offsetof<Candidates>());
  free(t.records, t.count * t.stride);
  free(changetype<usize>(t), offsetof<Table>());
}

// ---------------------------------------------------------------------------------------------------------------
// Picks

/** The pick's key: port index, policy, and the source's locality ids indexed by scope (words 2..7). */
const key: usize = memory.data(32, 8);
/** Per-record rank codes of the candidate set being built (see fill). */
const rankScratch = changetype<Region>(memory.data(offsetof<Region>()));

/** The rank of the last pick's candidates. */
export let lastRank: i32 = -1;
/** The last pick's candidate set (0: the last pick found none) and the position it drew in it, for pickSecond. */
let lastSet: usize = 0;
let lastPosition: i32 = 0;

export function setKey(port: i32, policy: i32, network: i32, cluster: i32, region: i32, zone: i32, subzone: i32,
                       node: i32): void {
  store<i32>(key, port, 0);
  store<i32>(key, policy, 4);
  store<i32>(key + 8, network, LB_NETWORK << 2);
  store<i32>(key + 8, cluster, LB_CLUSTER << 2);
  store<i32>(key + 8, region, LB_REGION << 2);
  store<i32>(key + 8, zone, LB_ZONE << 2);
  store<i32>(key + 8, subzone, LB_SUBZONE << 2);
  store<i32>(key + 8, node, LB_NODE << 2);
}

@inline function sourceId(scope: i32): i32 {
  return load<i32>(key + 8 + (<usize>scope << 2));
}

@inline function word(rec: usize, w: i32): i32 {
  return load<i32>(rec + (<usize>w << 2));
}

@inline function scopeAt(policy: i32, i: i32): i32 {
  return (policy >> (LB_PREFS_SHIFT + 3 * i)) & 7;
}

/** The record's rank under the key's policy and source, or -1 if it is filtered out. */
function rankOf(rec: usize, port: i32, policy: i32): i32 {
  if (word(rec, LB_TARGETS + port) == 0 || word(rec, LB_CAPACITY) == 0) return -1;
  const flags = word(rec, LB_FLAGS);
  if ((policy & LB_ALLOW_ALL) == 0 && (flags & LB_HEALTHY) == 0) return -1;
  const onNetwork = word(rec, LB_NETWORK) == sourceId(LB_NETWORK);
  // On the source's network an endpoint needs an address; off it, a network gateway to reach it through.
  if ((flags & (onNetwork ? LB_HAS_ADDRESS : LB_HAS_GATEWAY)) == 0) return -1;
  if ((policy & LB_SAME_NETWORK) != 0 && !onNetwork) return -1;
  if ((policy & LB_SAME_CLUSTER) != 0 && word(rec, LB_CLUSTER) != sourceId(LB_CLUSTER)) return -1;
  const mode = policy & LB_MODE_MASK;
  if (mode == LB_MODE_ALL) return 0;
  const n = min((policy >> LB_PREFS_COUNT_SHIFT) & 7, LB_MAX_PREFS);
  let rank = 0, i = 0, full = n;
  if (n > 0 && scopeAt(policy, 0) == LB_NETWORK) {
    // NETWORK first: a match counts n (above every off-network endpoint); a mismatch skips the scope.
    i = 1;
    full = 2 * n - 1;
    if (onNetwork) rank = n;
  }
  for (; i < n; i++) {
    const s = scopeAt(policy, i);
    if (s > LB_NODE || word(rec, s) != sourceId(s)) break;
    rank++;
  }
  if (mode == LB_MODE_STRICT && rank != full) return -1;
  return rank;
}

/**
 * Builds the key's candidate set into `e`: the best rank among live endpoints, or among all if every candidate is
 * ejected. One pass ranks (ranks[i] = rank * 2 + ejected, or -1) and counts; a second fills the set.
 */
function fill(t: Table, e: Candidates, now: f64): void {
  const c = t.ctx, count = t.count, stride = t.stride;
  const port = load<i32>(key, 0), policy = load<i32>(key, 4);
  const ranks = reserve(rankScratch, count << 2, true);
  let bestLive = -1, liveAtBest = 0, bestAny = -1, anyAtBest = 0;
  let expiry = Infinity;
  let rec = t.records;
  for (let i = 0; i < count; i++, rec += stride) {
    const r = rankOf(rec, port, policy);
    let code = -1;
    if (r >= 0) {
      const until = ejectedUntil(c, word(rec, LB_ENDPOINT_ID));
      const ejected = until > now;
      code = (r << 1) | <i32>ejected;
      if (ejected) {
        expiry = min(expiry, until);
      } else if (r > bestLive) {
        bestLive = r;
        liveAtBest = 1;
      } else if (r == bestLive) {
        liveAtBest++;
      }
      if (r > bestAny) {
        bestAny = r;
        anyAtBest = 1;
      } else if (r == bestAny) {
        anyAtBest++;
      }
    }
    store<i32>(ranks + (<usize>i << 2), code);
  }
  // Ejected endpoints are skipped unless every candidate is ejected; FAILOVER then moves to the next rank.
  const live = bestLive >= 0;
  const rank = live ? bestLive : bestAny;
  const n = live ? liveAtBest : anyAtBest;
  if (e.capacity < n) {
    free(e.items, e.capacity * ITEM_BYTES);
    e.items = alloc(n * ITEM_BYTES);
    e.capacity = n;
  }
  const cum = e.items, index = e.items + (<usize>e.capacity << 3);
  // Live: exactly rank * 2; otherwise rank * 2 with either ejected bit.
  const want = rank << 1, mask = live ? -1 : -2;
  let total: f64 = 0;
  rec = t.records;
  for (let i = 0, j = 0; j < n; i++, rec += stride) {
    if ((load<i32>(ranks + (<usize>i << 2)) & mask) != want) continue;
    total += <f64>load<u32>(rec + (LB_CAPACITY << 2));
    store<f64>(cum + (<usize>j << 3), total);
    store<i32>(index + (<usize>j << 2), i);
    j++;
  }
  e.k0 = load<i64>(key, 0);
  e.k1 = load<i64>(key, 8);
  e.k2 = load<i64>(key, 16);
  e.k3 = load<i64>(key, 24);
  e.generation = c.generation;
  e.rank = rank;
  e.count = n;
  e.total = total;
  e.expiry = expiry;
}

/** The key's candidate set: a cached one if still current, else rebuilt (in its own way, or the next in turn). */
function candidates(t: Table, now: f64): Candidates {
  const k0 = load<i64>(key, 0), k1 = load<i64>(key, 8), k2 = load<i64>(key, 16), k3 = load<i64>(key, 24);
  let w = 0;
  for (; w < WAYS; w++) {
    const e = wayOf(t, w);
    if (e.k0 == k0 && e.k1 == k1 && e.k2 == k2 && e.k3 == k3) {
      if (e.generation == t.ctx.generation && now < e.expiry) return e;
      break;
    }
  }
  if (w == WAYS) {
    w = t.nextWay;
    t.nextWay = (w + 1) % WAYS;
  }
  const e = wayOf(t, w);
  fill(t, e, now);
  return e;
}

/** The first candidate whose cumulative weight exceeds r. */
function search(e: Candidates, r: f64): i32 {
  let lo = 0, hi = e.count - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (load<f64>(e.items + (<usize>mid << 3)) > r) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

@inline function cumAt(e: Candidates, j: i32): f64 {
  return j < 0 ? 0 : load<f64>(e.items + (<usize>j << 3));
}

@inline function recordAt(e: Candidates, j: i32): i32 {
  return load<i32>(e.items + (<usize>e.capacity << 3) + (<usize>j << 2));
}

/** The key's pick: a record index drawn by capacity with `rand` (uniform u32), or -1 if there is no candidate. */
export function pick(t: Table, rand: u32, now: f64): i32 {
  lastSet = 0;
  const e = candidates(t, now);
  if (e.count == 0) return -1;
  lastRank = e.rank;
  const a = search(e, <f64>rand / 4294967296.0 * e.total);
  lastSet = changetype<usize>(e);
  lastPosition = a;
  return recordAt(e, a);
}

/** No pick to draw a second candidate for (a pick that found none, or whose table is gone). */
export function forgetPick(): void {
  lastSet = 0;
}

/**
 * A second candidate of the last pick, for a power-of-two-choices pick: drawn with `rand2` from the same
 * candidates without the first (its weight cut out of the range); -1 if there is no other.
 */
export function pickSecond(rand2: u32): i32 {
  if (lastSet == 0) return -1;
  const e = changetype<Candidates>(lastSet);
  if (e.count <= 1) return -1;
  const a = lastPosition;
  const before = cumAt(e, a - 1), weight = cumAt(e, a) - before;
  let r = <f64>rand2 / 4294967296.0 * (e.total - weight);
  if (r >= before) r += weight;
  return recordAt(e, search(e, r));
}
