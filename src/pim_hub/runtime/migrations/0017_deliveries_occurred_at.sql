-- The console's overview counts deliveries of the last hour per integration and status;
-- without this index that reads the whole projection (a million rows and more).
CREATE INDEX IF NOT EXISTS deliveries_occurred_at ON deliveries (occurred_at);
