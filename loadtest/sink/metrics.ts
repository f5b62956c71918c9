import type { SinkStats } from "./state.ts";

/**
 * Prometheus text exposition of a stats snapshot, so a Prometheus/Grafana stack (or the compose
 * profile's scraper) can chart delivery throughput and latency next to Evently's own metrics.
 * Latency is a summary with precomputed quantiles: the sink's histogram is its own, and re-exporting
 * thousands of log buckets would be noise.
 */
// Label values come from request paths, so they are escaped as the exposition format requires.
const label = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

export function renderMetrics(s: SinkStats): string {
  const lines: string[] = [];
  const metric = (name: string, type: string, help: string, samples: Array<[labels: string, value: number]>) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  };

  metric("sink_requests_total", "counter", "Delivery requests received by the sink, by outcome.", [
    ['{outcome="unique"}', s.unique],
    ['{outcome="duplicate"}', s.duplicates],
    ['{outcome="invalid"}', s.invalid],
    ['{outcome="injected_failure"}', s.injectedFailures],
  ]);
  metric(
    "sink_invalid_total",
    "counter",
    "Deliveries rejected by the signature, timestamp or header checks, by reason.",
    Object.entries(s.invalidReasons).map(([reason, n]) => [`{reason="${label(reason)}"}`, n]),
  );
  metric("sink_unverified_total", "counter", "Deliveries accepted without a check: no secret applied.", [["", s.unverified]]);
  metric("sink_missing_timestamp_total", "counter", "Unique deliveries whose envelope had no usable timestamp.", [
    ["", s.missingTimestamp],
  ]);
  metric("sink_scope_unique_total", "counter", "Unique deliveries per /hooks/<scope> (empty: unscoped).", [
    ...Object.entries(s.byScope).map(([scope, v]): [string, number] => [`{scope="${label(scope)}"}`, v.unique]),
  ]);

  const l = s.latencyMs;
  const sec = (ms: number) => ms / 1000;
  metric("sink_delivery_latency_seconds", "summary", "Event creation to first receipt at the sink.", [
    ['{quantile="0.5"}', sec(l.p50)],
    ['{quantile="0.9"}', sec(l.p90)],
    ['{quantile="0.95"}', sec(l.p95)],
    ['{quantile="0.99"}', sec(l.p99)],
    ['{quantile="0.999"}', sec(l.p999)],
    ['{quantile="1"}', sec(l.max)],
  ]);
  lines.push(`sink_delivery_latency_seconds_sum ${sec(l.mean * l.count)}`);
  lines.push(`sink_delivery_latency_seconds_count ${l.count}`);
  metric("sink_deliveries_per_second", "gauge", "Unique deliveries in the last complete second.", [["", s.rate.lastSecond]]);
  metric("sink_deliveries_per_second_peak", "gauge", "Busiest second since the last reset.", [["", s.rate.peakSecond]]);
  return lines.join("\n") + "\n";
}
