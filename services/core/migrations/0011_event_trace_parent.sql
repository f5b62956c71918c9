-- Each event keeps the W3C `traceparent` of the API request span that accepted it, so every span
-- made for its jobs later (a sweep, a retry hours on, a replay) joins the event's trace.
--
-- Null unless that span was recorded (tracing on and the request sampled): with tracing off the
-- column costs one null per event. Nullable with no default, so adding it rewrites nothing.
alter table events add column trace_parent text;

-- The ingest statement's input (0007, 0008) gains the column. The eight-argument version stays, so
-- API processes still running the previous release keep ingesting while a new one rolls out.
create function evently_event_input(
  p_ids text[], p_app_ids text[], p_types text[], p_data text[], p_keys text[], p_created timestamptz[], p_patterns text[],
  p_ttls integer[], p_trace_parents text[]
) returns table (id text, app_id text, type text, data text, idempotency_key text, created_at timestamptz, patterns text,
                 ttl_seconds integer, trace_parent text)
language plpgsql stable parallel safe rows 100 as $$
begin
  return query select * from unnest(p_ids, p_app_ids, p_types, p_data, p_keys, p_created, p_patterns, p_ttls, p_trace_parents);
end $$;
