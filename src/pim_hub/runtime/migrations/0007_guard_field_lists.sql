-- Dispatcher: a creation's field versions as one row. A delivered creation records the
-- entity row and one '@fields|||' row whose `covers` lists the field keys it delivered at
-- that row's version and job (instead of one row per field: a product's 100-odd values were
-- 100-odd rows and index entries, most of the guard's database work during a full load).
-- A field's own row, where there is one, wins over the list.
-- depends: 0001_initial

ALTER TABLE delivered_versions ADD COLUMN IF NOT EXISTS covers jsonb;
