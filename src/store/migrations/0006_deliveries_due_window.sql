ALTER TABLE "deliveries" DROP CONSTRAINT "deliveries_event_id_events_id_fk";
--> statement-breakpoint
-- The earliest due deliveries, always along deliveries_due_idx, stopping after max_rows: the
-- claim's window (src/delivery/queue.ts). Planned in the claim itself, the window followed the
-- statistics: taken in a steady state, where nearly every delivery has succeeded, they promise a
-- handful of due rows, and once a burst queued thousands the planner read and sorted all of them
-- on every claim (a bitmap scan). Without bitmap scans, sequential scans and sorts, the ordered
-- index scan is the plan whatever the statistics say.
CREATE FUNCTION "deliveries_due_window"("max_rows" integer)
RETURNS TABLE ("id" text, "installation_id" text, "next_attempt_at" timestamp with time zone, "seq" bigint, "order_key" text)
LANGUAGE sql STABLE
SET enable_bitmapscan = off SET enable_seqscan = off SET enable_sort = off
AS $$
  SELECT d.id, d.installation_id, d.next_attempt_at, d.seq, d.order_key
  FROM deliveries d
  WHERE d.status IN ('pending', 'failed') AND d.next_attempt_at <= now()
  ORDER BY d.next_attempt_at
  LIMIT max_rows
$$;
