-- Ids stored before have no account (''): the API took none, so which of the platform's accounts
-- an id meant is not known. An id without account keeps matching the platform's every account
-- (src/users/users.ts), as it did. The column comes first: drizzle-kit wrote the key before it.
ALTER TABLE "user_external_ids" ADD COLUMN "account" text DEFAULT '' NOT NULL;--> statement-breakpoint
DROP INDEX "user_external_ids_lookup_idx";--> statement-breakpoint
ALTER TABLE "user_external_ids" DROP CONSTRAINT "user_external_ids_user_id_platform_pk";--> statement-breakpoint
ALTER TABLE "user_external_ids" ADD CONSTRAINT "user_external_ids_user_id_platform_account_pk" PRIMARY KEY("user_id","platform","account");--> statement-breakpoint
CREATE UNIQUE INDEX "user_external_ids_lookup_idx" ON "user_external_ids" USING btree ("organization_id","platform","external_id","account");
