CREATE TABLE "secret_key_holders" (
	"process_id" text PRIMARY KEY NOT NULL,
	"host" text NOT NULL,
	"pid" integer NOT NULL,
	"key_ids" text[] NOT NULL,
	"sealing_key_id" text,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"heartbeat_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "secret_key_state" (
	"id" boolean PRIMARY KEY DEFAULT true NOT NULL,
	"active_key_id" text NOT NULL,
	"changed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "secret_key_state_one_row" CHECK ("secret_key_state"."id")
);
