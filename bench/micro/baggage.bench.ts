// Baggage: our Wasm codec (host/baggage.ts, W3C-mode decode and ztunnel encode) vs @opentelemetry/core's
// W3CBaggagePropagator (extract through a getter over a carrier, inject through a setter), on a
// realistic ztunnel header (7 members) and a bigger W3C one (30 members, some percent-encoded values
// and properties). One op is one header decoded or encoded.

import { createRequire } from "node:module";
import {
  type Context,
  ROOT_CONTEXT,
  defaultTextMapGetter,
  defaultTextMapSetter,
  propagation,
} from "@opentelemetry/api";
import { type BaggageMeta, decodeBaggage, encodeBaggage } from "../../host/baggage.js";
import { type RunOptions, type SuiteResult, newBench, figureOf, ratioOf } from "../harness.js";

// @opentelemetry/core is CommonJS: require it, as a Node service using it would.
const { W3CBaggagePropagator } = createRequire(import.meta.url)(
  "@opentelemetry/core",
) as typeof import("@opentelemetry/core");

const META: BaggageMeta = {
  clusterId: "Kubernetes",
  namespace: "bookinfo",
  workloadName: "productpage-v1",
  workloadType: "deployment",
  service: "productpage",
  revision: "v1",
  region: "us-central1",
  zone: "us-central1-a",
};
const ZTUNNEL_HEADER =
  "k8s.cluster.name=Kubernetes,k8s.namespace.name=bookinfo,k8s.deployment.name=productpage-v1," +
  "service.name=productpage,service.version=v1,cloud.region=us-central1,cloud.availability_zone=us-central1-a";

/** The ztunnel members, then 23 application members as OpenTelemetry SDKs send them. */
function bigHeader(): string {
  const app = [
    "tenant.id=acme-42",
    "user.id=8f14e45fceea167a",
    "user.name=Am%C3%A9lie",
    "user.tier=gold;ttl=60",
    "session.id=9f86d081884c7d65",
    "request.origin=mobile-ios",
    "app.version=5.12.0",
    "feature.flags=ab%2Ccheckout-v2",
    "experiment.id=exp-1234;sampled",
    "synthetic=false",
    "priority=high",
    "locale=fr-FR",
    "currency=EUR",
    "cart.items=3",
    "deployment.environment=production",
    "client.ip=203.0.113.7",
    "trace.origin=edge-gw-3",
    "route=%2Fapi%2Fv2%2Fcheckout",
    "retry.count=0",
    "canary=false",
    "region.home=eu-west1",
    "partner.id=p-77;source=affiliate",
    "consent=analytics%3Dyes",
  ];
  return `${ZTUNNEL_HEADER},${app.join(",")}`;
}

type Pairs = [string, string][];

function otelExtract(prop: InstanceType<typeof W3CBaggagePropagator>, header: string): Pairs {
  const ctx = prop.extract(ROOT_CONTEXT, { baggage: header }, defaultTextMapGetter);
  return (propagation.getBaggage(ctx)?.getAllEntries() ?? []).map(([k, e]): [string, string] => [k, e.value]);
}

function mustEqual(what: string, got: unknown, want: unknown): void {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`baggage bench: ${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

/** Before timing: both decoders agree on both headers, and both encoders write the same ztunnel header. */
function sanityCheck(prop: InstanceType<typeof W3CBaggagePropagator>, headers: string[], ctx: Context): void {
  for (const h of headers) {
    const ours = decodeBaggage(h, "w3c");
    mustEqual("Wasm decode validity", [ours.valid, ours.truncated], [true, false]);
    mustEqual(
      "decoded members",
      ours.members.map((m): [string, string] => [m.key, m.value]),
      otelExtract(prop, h),
    );
  }
  mustEqual("Wasm encode", encodeBaggage(META), ZTUNNEL_HEADER);
  const carrier: Record<string, string> = {};
  prop.inject(ctx, carrier, defaultTextMapSetter);
  mustEqual("OpenTelemetry inject", carrier.baggage, ZTUNNEL_HEADER);
}

export async function runBaggageBench(opts: RunOptions): Promise<SuiteResult> {
  const prop = new W3CBaggagePropagator();
  const big = bigHeader();
  // The context OpenTelemetry injects from: the ztunnel fields as baggage entries, in emission order.
  const entries = Object.fromEntries(
    ZTUNNEL_HEADER.split(",")
      .map((m) => m.split("="))
      .map(([k, v]) => [k, { value: v }]),
  );
  const ctx = propagation.setBaggage(ROOT_CONTEXT, propagation.createBaggage(entries));
  sanityCheck(prop, [ZTUNNEL_HEADER, big], ctx);
  const bigCount = big.split(",").length;

  const bench = newBench("baggage", opts);
  const DEC7 = "baggage decode 7 members: Wasm (W3C mode)",
    DEC7_JS = "baggage decode 7 members: @opentelemetry/core";
  const DEC30 = `baggage decode ${bigCount} members: Wasm (W3C mode)`;
  const DEC30_JS = `baggage decode ${bigCount} members: @opentelemetry/core`;
  const ENC = "baggage encode 7 members: Wasm",
    ENC_JS = "baggage encode 7 members: @opentelemetry/core";
  // Each op checks what it produced, which also keeps the work observable. OpenTelemetry's extract
  // builds its Baggage; reading it back as entries is the list our decode returns.
  const decode = (h: string, n: number) => () => {
    if (decodeBaggage(h, "w3c").members.length !== n) throw new Error("Wasm decode lost members");
  };
  const extract = (h: string, n: number) => () => {
    const ctx = prop.extract(ROOT_CONTEXT, { baggage: h }, defaultTextMapGetter);
    if (propagation.getBaggage(ctx)?.getAllEntries().length !== n)
      throw new Error("OpenTelemetry extract lost members");
  };
  bench.add(DEC7, decode(ZTUNNEL_HEADER, 7));
  bench.add(DEC7_JS, extract(ZTUNNEL_HEADER, 7));
  bench.add(DEC30, decode(big, bigCount));
  bench.add(DEC30_JS, extract(big, bigCount));
  bench.add(ENC, () => {
    if (encodeBaggage(META).length !== ZTUNNEL_HEADER.length) throw new Error("Wasm encode: wrong length");
  });
  bench.add(ENC_JS, () => {
    const carrier: Record<string, string> = {};
    prop.inject(ctx, carrier, defaultTextMapSetter);
    if (carrier.baggage.length !== ZTUNNEL_HEADER.length) throw new Error("OpenTelemetry inject: wrong length");
  });
  await bench.run();

  const bytes = (h: string) => ({ bytesPerOp: h.length, throughputUnit: "MB/s header" });
  const dec7 = figureOf(bench.getTask(DEC7)!, { ...bytes(ZTUNNEL_HEADER), baseline: DEC7_JS });
  const dec7Js = figureOf(bench.getTask(DEC7_JS)!, bytes(ZTUNNEL_HEADER));
  const dec30 = figureOf(bench.getTask(DEC30)!, { ...bytes(big), baseline: DEC30_JS });
  const dec30Js = figureOf(bench.getTask(DEC30_JS)!, bytes(big));
  const enc = figureOf(bench.getTask(ENC)!, { ...bytes(ZTUNNEL_HEADER), baseline: ENC_JS });
  const encJs = figureOf(bench.getTask(ENC_JS)!, bytes(ZTUNNEL_HEADER));
  const ratios = [
    ratioOf("baggage decode, 7 members: Wasm vs @opentelemetry/core", dec7, dec7Js),
    ratioOf(`baggage decode, ${bigCount} members: Wasm vs @opentelemetry/core`, dec30, dec30Js),
    ratioOf("baggage encode, 7 members: Wasm vs @opentelemetry/core", enc, encJs),
  ];
  const target = (r: (typeof ratios)[number], task: string) => ({
    name: `${r.name} (speed)`,
    value: r.value,
    goal: 2.0,
    met: r.value >= 2.0,
    task,
  });
  return {
    suite: "baggage",
    figures: [dec7, dec7Js, dec30, dec30Js, enc, encJs],
    ratios,
    targets: [target(ratios[0], DEC7), target(ratios[1], DEC30), target(ratios[2], ENC)],
    notes: [
      `baggage: a ztunnel header of 7 members (${ZTUNNEL_HEADER.length} bytes) and a W3C header of ${bigCount} members ` +
        `(${big.length} bytes). Decode: our W3C mode (strict grammar, members plus ztunnel fields) vs ` +
        "W3CBaggagePropagator.extract + getAllEntries; encode: ztunnel's header from its fields vs inject of the same " +
        "7 entries (which also percent-encodes).",
    ],
  };
}
