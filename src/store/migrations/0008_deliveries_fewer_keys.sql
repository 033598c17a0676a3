-- Two foreign keys whose checks cost every delivery written (the settle statement writes a delivery
-- and its attempt in one go): deliveries -> organizations is implied by deliveries -> installations
-- (a destination goes with its organization, and its deliveries with it); delivery_attempts ->
-- deliveries becomes this trigger, which removes a delivery's attempts with the delivery.
ALTER TABLE "deliveries" DROP CONSTRAINT "deliveries_organization_id_organizations_id_fk";
--> statement-breakpoint
ALTER TABLE "delivery_attempts" DROP CONSTRAINT "delivery_attempts_delivery_id_deliveries_id_fk";
--> statement-breakpoint
CREATE FUNCTION "delivery_attempts_follow_deliveries"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM delivery_attempts a USING gone g WHERE a.delivery_id = g.id;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "deliveries_remove_attempts" AFTER DELETE ON "deliveries"
REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION "delivery_attempts_follow_deliveries"();
