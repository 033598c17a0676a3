CREATE INDEX "deliveries_destination_due_idx" ON "deliveries" USING btree ("installation_id","next_attempt_at") WHERE status not in ('succeeded', 'dead', 'delivering');--> statement-breakpoint
-- One destination's earliest due deliveries that may go now (an ordered destination's first of
-- each key), along deliveries_destination_due_idx, stopping after max_rows: for the claims that go
-- destination by destination (src/delivery/queue.ts). Like deliveries_due_window (0006), planned
-- apart so that statistics from a steady state cannot turn it into reading and sorting every due
-- delivery (all destinations' in one bitmap, as the claims did before) on every claim. Waiting is
-- written `status not in ('succeeded', 'dead', 'delivering')` (the same as `in ('pending',
-- 'failed')`) so that only that index matches: deliveries_due_idx would walk other destinations'
-- due deliveries first.
CREATE FUNCTION "deliveries_due_for"("destination" text, "max_rows" integer)
RETURNS TABLE ("id" text, "next_attempt_at" timestamp with time zone)
LANGUAGE sql STABLE ROWS 10
SET enable_bitmapscan = off SET enable_seqscan = off SET enable_sort = off
AS $$
  SELECT d.id, d.next_attempt_at
  FROM deliveries d
  WHERE d.installation_id = destination AND d.status NOT IN ('succeeded', 'dead', 'delivering')
    AND d.next_attempt_at <= now()
    AND (d.order_key IS NULL OR NOT EXISTS (
      SELECT 1 FROM deliveries e
      WHERE e.installation_id = d.installation_id AND e.order_key = d.order_key
        AND e.seq < d.seq AND e.status IN ('pending', 'delivering', 'failed')))
  ORDER BY d.next_attempt_at
  LIMIT max_rows
$$;
