ALTER TABLE "dedupe_keys" ADD COLUMN "event_ids" text[] DEFAULT '{}' NOT NULL;--> statement-breakpoint
-- Keys written before: a request's key gets the events its request made (one pass over events,
-- grouped), in id order as duplicates were answered; a key of one event (HubSpot's per-event keys,
-- `event:…`), or whose request made none (custom events), gets the event it names.
UPDATE "dedupe_keys" k SET "event_ids" = m.ids
FROM (
  SELECT organization_id, raw_request_id, array_agg(id ORDER BY id) AS ids FROM "events"
  WHERE raw_request_id IS NOT NULL GROUP BY organization_id, raw_request_id
) m
WHERE m.organization_id = k.organization_id AND m.raw_request_id = k.request_id AND k.key NOT LIKE 'event:%';--> statement-breakpoint
UPDATE "dedupe_keys" SET "event_ids" = ARRAY["event_id"] WHERE "event_ids" = '{}' AND "event_id" IS NOT NULL;
