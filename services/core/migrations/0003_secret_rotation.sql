-- Secret rotation with a grace window. Rotating keeps the secret being replaced, with the moment it
-- stops being used; until then every delivery is signed with both, so receivers can move to the new
-- secret without failing deliveries in between. Only one previous secret is kept: rotating again
-- during a window replaces it (the older one is dropped at once).
--
-- Both columns are null when there is no previous secret. Adding nullable columns without a default
-- rewrites nothing: existing endpoints read as never rotated with grace.
alter table endpoints
  add column previous_secret            text,
  add column previous_secret_expires_at timestamptz,
  add constraint endpoints_previous_secret_check
    check ((previous_secret is null) = (previous_secret_expires_at is null));
