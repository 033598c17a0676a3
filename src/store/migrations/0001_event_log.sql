CREATE TABLE "consumer_members" (
	"group_id" text NOT NULL,
	"member_id" text NOT NULL,
	"heartbeat_at" timestamp with time zone NOT NULL,
	CONSTRAINT "consumer_members_group_id_member_id_pk" PRIMARY KEY("group_id","member_id")
);
--> statement-breakpoint
CREATE TABLE "consumer_offsets" (
	"group_id" text NOT NULL,
	"topic" text NOT NULL,
	"partition" integer NOT NULL,
	"committed" bigint DEFAULT 0 NOT NULL,
	"owner" text,
	"lease_until" timestamp with time zone,
	CONSTRAINT "consumer_offsets_group_id_topic_partition_pk" PRIMARY KEY("group_id","topic","partition")
);
--> statement-breakpoint
CREATE TABLE "dedupe_keys" (
	"organization_id" text NOT NULL,
	"scope" text NOT NULL,
	"key" text NOT NULL,
	"request_id" text,
	"event_id" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "dedupe_keys_organization_id_scope_key_pk" PRIMARY KEY("organization_id","scope","key")
);
--> statement-breakpoint
CREATE TABLE "events" (
	"id" text PRIMARY KEY NOT NULL,
	"organization_id" text NOT NULL,
	"installation_id" text,
	"source" text NOT NULL,
	"type" text NOT NULL,
	"subject" text,
	"time" timestamp with time zone NOT NULL,
	"partition_key" text NOT NULL,
	"topic" text NOT NULL,
	"user_id" text,
	"data" jsonb NOT NULL,
	"raw_request_id" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "inbound_requests" (
	"id" text PRIMARY KEY NOT NULL,
	"organization_id" text NOT NULL,
	"installation_id" text,
	"received_at" timestamp with time zone NOT NULL,
	"method" text NOT NULL,
	"path" text NOT NULL,
	"headers" jsonb NOT NULL,
	"body" "bytea",
	"body_size" integer NOT NULL,
	"status" text NOT NULL,
	"error_code" text,
	"dedupe_key" text,
	"event_count" integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "installations" (
	"id" text PRIMARY KEY NOT NULL,
	"organization_id" text NOT NULL,
	"connector_id" text NOT NULL,
	"name" text NOT NULL,
	"config" jsonb NOT NULL,
	"secrets" text,
	"secret_keys" text[] DEFAULT '{}'::text[] NOT NULL,
	"route_key" text,
	"status" text DEFAULT 'active' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"uninstalled_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "log_entries" (
	"topic" text NOT NULL,
	"partition" integer NOT NULL,
	"offset" bigint NOT NULL,
	"event_id" text NOT NULL,
	"replay" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "log_entries_topic_partition_offset_pk" PRIMARY KEY("topic","partition","offset")
);
--> statement-breakpoint
CREATE TABLE "log_partitions" (
	"topic" text NOT NULL,
	"partition" integer NOT NULL,
	"next_offset" bigint NOT NULL,
	CONSTRAINT "log_partitions_topic_partition_pk" PRIMARY KEY("topic","partition")
);
--> statement-breakpoint
ALTER TABLE "dedupe_keys" ADD CONSTRAINT "dedupe_keys_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "events" ADD CONSTRAINT "events_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "inbound_requests" ADD CONSTRAINT "inbound_requests_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "installations" ADD CONSTRAINT "installations_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "events_organization_idx" ON "events" USING btree ("organization_id","id");--> statement-breakpoint
CREATE INDEX "events_type_idx" ON "events" USING btree ("organization_id","type","id");--> statement-breakpoint
CREATE INDEX "events_installation_idx" ON "events" USING btree ("organization_id","installation_id","id");--> statement-breakpoint
CREATE INDEX "inbound_requests_installation_idx" ON "inbound_requests" USING btree ("organization_id","installation_id","id");--> statement-breakpoint
CREATE INDEX "installations_organization_idx" ON "installations" USING btree ("organization_id","id");--> statement-breakpoint
CREATE UNIQUE INDEX "installations_route_idx" ON "installations" USING btree ("connector_id","route_key") WHERE status = 'active' and route_key is not null;